//go:build e2e

// Package capability checks fhirwall's generated CapabilityStatements against the outside: HAPI's validator
// with the IG packages the statements name, and the FHIR server behind, which must support every search
// parameter, interaction and operation fhirwall advertises (a parameter it lacks is a 400 HAPI-0524).
package capability

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/capability/capabilitytest"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/policies"
	"github.com/fhirwall/fhirwall/test/fhirvalidator"
	"github.com/fhirwall/fhirwall/test/require"
)

// statements renders every example API's CapabilityStatement, for the standalone face or Envoy's. The
// issuer's endpoints are given as overrides: what is checked here is the statement, not the IdP.
func statements(t *testing.T, standalone bool) map[string][]byte {
	t.Helper()
	apis, c := capabilitytest.Example(t, standalone)
	for i := range apis {
		s := &apis[i].SMART
		s.AuthorizationEndpoint, s.TokenEndpoint, s.JWKSURI = c.Issuers[0].URL+"/protocol/openid-connect/auth",
			c.Issuers[0].URL+"/protocol/openid-connect/token", c.Issuers[0].URL+"/protocol/openid-connect/certs"
	}
	h, err := capability.New(apis, nil, capability.Options{Date: "2026-12-06", Version: "e2e"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, a := range apis {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", a.Prefix+"/metadata", nil))
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", a.Name, w.Code, w.Body)
		}
		out[a.Name] = w.Body.Bytes()
	}
	return out
}

// TestCapabilityStatementsValidate: every generated statement, from both faces, is a valid R4
// CapabilityStatement whose profiles and guides resolve in the packages it names (CARIN BB 2.0.0 and its
// non-financial profiles, US Core 6.1.0, Da Vinci PAS 2.0.1 with the US Core 3.1.1 it builds on).
func TestCapabilityStatementsValidate(t *testing.T) {
	evidence.Proves(t, "USCORE-01", "SMART-02")
	pkgs := fhirvalidator.Packages(t, "hl7.fhir.us.core-6.1.0.tgz", "hl7.fhir.us.carin-bb-2.0.0.tgz", "hl7.fhir.us.carin-bb-2.0.0-nonfinancial.tgz",
		"hl7.fhir.us.core-3.1.1.tgz", "hl7.fhir.us.davinci-pas-2.0.1.tgz")
	dir := t.TempDir()
	var files []string
	for _, standalone := range []bool{false, true} {
		face := map[bool]string{false: "envoy", true: "standalone"}[standalone]
		for name, body := range statements(t, standalone) {
			f := filepath.Join(dir, "CapabilityStatement-"+name+"-"+face+".json")
			if err := os.WriteFile(f, body, 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	slices.Sort(files)
	for _, line := range fhirvalidator.Validate(t, pkgs, files) {
		t.Error(line)
	}
}

// TestTheFHIRServerSupportsWhatTheStatementsAdvertise asks the FHIR server behind (fhir_server.url, HAPI in
// the stack) for its own CapabilityStatement: every search parameter config lists for a type, every
// interaction and every operation fhirwall advertises must be one it supports, or apps get its 400.
func TestTheFHIRServerSupportsWhatTheStatementsAdvertise(t *testing.T) {
	evidence.Proves(t, "USCORE-01")
	_, c := capabilitytest.Example(t, false)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(c.FHIRServer.URL + "/metadata")
	if err != nil {
		require.Missing(t, "the FHIR server is not running ("+err.Error()+"): make stack-up")
		return
	}
	defer resp.Body.Close()
	type named struct{ Name, Code, Definition string }
	var server struct {
		Rest []struct {
			Resource []struct {
				Type        string
				Interaction []named
				SearchParam []named
				Operation   []named
			}
		}
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s/metadata: %d", c.FHIRServer.URL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&server); err != nil || len(server.Rest) == 0 {
		t.Fatalf("%s/metadata: %v", c.FHIRServer.URL, err)
	}
	supports := map[string]map[string]bool{} // type → "param:x", "interaction:y", "operation:definition"
	for _, r := range server.Rest[0].Resource {
		m := map[string]bool{}
		for _, p := range r.SearchParam {
			m["param:"+p.Name] = true
		}
		for _, i := range r.Interaction {
			m["interaction:"+i.Code] = true
		}
		for _, o := range r.Operation {
			m["operation:"+o.Definition] = true
		}
		supports[r.Type] = m
	}
	for _, a := range c.APIs {
		for _, r := range a.Resources {
			for _, p := range r.SearchParams {
				if !supports[r.Type]["param:"+p] {
					t.Errorf("%s: %s search parameter %q is listed in config/fhirwall.yaml but unknown to the FHIR server", a.Name, r.Type, p)
				}
			}
		}
	}
	for name, body := range statements(t, false) {
		var cs struct {
			Rest []struct {
				Resource []struct {
					Type        string
					Interaction []named
					Operation   []named
				}
			}
		}
		if err := json.Unmarshal(body, &cs); err != nil {
			t.Fatal(err)
		}
		for _, r := range cs.Rest[0].Resource {
			for _, i := range r.Interaction {
				if answeredByFhirwall(t, name, map[string]any{"method": map[string]string{"create": "POST", "delete": "DELETE"}[i.Code],
					"interaction": i.Code, "resource_type": r.Type, "id": map[bool]string{true: "", false: "x"}[i.Code == "create" || i.Code == "search-type"]}) {
					continue // an adapter answers it (Prior Authorization's Subscriptions), never the FHIR server
				}
				if !supports[r.Type]["interaction:"+i.Code] {
					t.Errorf("%s: %s %s advertised, the FHIR server does not support it", name, r.Type, i.Code)
				}
			}
			for _, o := range r.Operation {
				if answeredByFhirwall(t, name, map[string]any{"method": "POST", "interaction": "operation", "resource_type": r.Type, "id": "",
					"operation": map[string]any{"name": o.Name, "level": "type"}}) {
					continue // an adapter answers it (Payer-to-Payer's member match), never the FHIR server
				}
				if !supports[r.Type]["operation:"+o.Definition] {
					t.Errorf("%s: %s $%s (%s) advertised, the FHIR server does not support it", name, r.Type, o.Name, o.Definition)
				}
			}
		}
	}
}

// answeredByFhirwall asks the policies (the embedded set, with the example configuration as data) whether a
// request (a type-level POST of an operation, an interaction), by a caller the API serves, is answered by one
// of fhirwall's adapters (the obligation "adapter") rather than the FHIR server. name is the statement's name:
// "<api> ...".
func answeredByFhirwall(t *testing.T, name string, req map[string]any) bool {
	t.Helper()
	_, c := capabilitytest.Example(t, false)
	engine, err := policy.New(context.Background(), policies.FS, (&config.Config{APIs: c.APIs}).PolicyData())
	if err != nil {
		t.Fatal(err)
	}
	if req["method"] == "" || req["method"] == nil {
		req["method"] = "GET"
	}
	req["params"], req["patient_params"] = []any{}, []any{}
	api, _, _ := strings.Cut(name, " ")
	api = strings.TrimSuffix(api, ":")
	res, err := engine.Decide(context.Background(), map[string]any{
		"api": api, "authenticated": true,
		// every permission: Prior Authorization's $submit needs c on Claim
		"identity": map[string]any{"client_id": "x", "org": "Organization/x", "scopes": []any{map[string]any{
			"raw": "system/*.cruds", "context": "system", "resource_type": "*",
			"permissions": map[string]any{"c": true, "r": true, "u": true, "d": true, "s": true}}}},
		"facts":   map[string]any{"payer": "Organization/x", "provider": "Organization/x", "prefer_respond_async": true},
		"request": req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.Allow && res.Obligations.Adapter != ""
}
