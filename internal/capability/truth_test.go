package capability_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/capability/capabilitytest"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/policies"
)

// statement is the part of a rendered CapabilityStatement these tests read.
type statement struct {
	ImplementationGuide []string
	Implementation      struct{ URL string }
	Rest                []struct {
		Resource []struct {
			Type             string
			SupportedProfile []string
			Interaction      []struct{ Code string }
			Operation        []struct{ Name, Definition string }
		}
	}
}

func render(t *testing.T, apis []capability.API, path string, into any) {
	t.Helper()
	w := get(t, newHandler(t, apis, &fakeDiscovery{ep: keycloak(t)}), path, nil)
	if w.Code != 200 {
		t.Fatalf("%s: %d %s", path, w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), into); err != nil {
		t.Fatal(err)
	}
}

// TestInteractionsAndOperationsAreWhatThePolicyServes asks the policies themselves (the embedded set, with
// the example configuration as data) for every type-level interaction on every listed type, for a Group
// $export and for every operation listed: the CapabilityStatement lists an interaction or operation exactly
// when the policy does not refuse it as not served.
func TestInteractionsAndOperationsAreWhatThePolicyServes(t *testing.T) {
	apis, c := capabilitytest.Example(t, false)
	engine, err := policy.New(context.Background(), policies.FS, (&config.Config{APIs: c.APIs}).PolicyData())
	if err != nil {
		t.Fatal(err)
	}
	notServed := []string{"interaction_not_served", "read_only_api", "resource_type_not_served"}
	decide := func(api string, req map[string]any) []string {
		if req["method"] == nil {
			req["method"] = "GET"
		}
		req["params"] = []any{}
		r, err := engine.Decide(context.Background(), map[string]any{"api": api, "authenticated": true, "request": req,
			"identity": map[string]any{}, "facts": map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		return r.Reasons
	}
	for _, a := range apis {
		var cs statement
		render(t, apis, a.Prefix+"/metadata", &cs)
		for _, res := range cs.Rest[0].Resource {
			for _, code := range []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"} {
				req := map[string]any{"interaction": code, "resource_type": res.Type,
					"method": map[string]any{"update": "PUT", "patch": "PATCH", "delete": "DELETE", "create": "POST"}[code]}
				if code != "search-type" && code != "history-type" && code != "create" {
					req["id"] = "x"
				}
				if code == "vread" {
					req["version"] = "1"
				}
				reasons := decide(a.Name, req)
				served := !slices.ContainsFunc(reasons, func(r string) bool { return slices.Contains(notServed, r) })
				listed := slices.ContainsFunc(res.Interaction, func(i struct{ Code string }) bool { return i.Code == code })
				if served != listed {
					t.Errorf("%s: %s %s: policy reasons %v, CapabilityStatement lists it: %v", a.Name, code, res.Type, reasons, listed)
				}
			}
		}
		// Bulk Data 2.0 §Bulk Data Kick-off Request: GET [base]/Group/[id]/$export.
		reasons := decide(a.Name, map[string]any{"interaction": "operation", "resource_type": "Group", "id": "g",
			"operation": map[string]any{"name": "export", "level": "instance"}})
		served := !slices.ContainsFunc(reasons, func(r string) bool { return slices.Contains(notServed, r) })
		listed := false
		for _, res := range cs.Rest[0].Resource {
			for _, o := range res.Operation {
				if res.Type == "Group" && o.Name == "export" && o.Definition == "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export" {
					listed = true
				}
			}
		}
		if served != listed {
			t.Errorf("%s: Group $export: policy reasons %v, CapabilityStatement lists it: %v", a.Name, reasons, listed)
		}
		// Every other operation listed is served at the level it is listed at ($export above is an instance's).
		for _, res := range cs.Rest[0].Resource {
			for _, o := range res.Operation {
				if o.Name == "export" || o.Name == "davinci-data-export" {
					continue
				}
				reasons := decide(a.Name, map[string]any{"interaction": "operation", "resource_type": res.Type, "method": "POST",
					"operation": map[string]any{"name": o.Name, "level": "type"}})
				if slices.ContainsFunc(reasons, func(r string) bool { return slices.Contains(notServed, r) }) {
					t.Errorf("%s: %s $%s is listed, the policy refuses it as not served: %v", a.Name, res.Type, o.Name, reasons)
				}
			}
		}
	}
}

// realm is the part of config/keycloak/fhirwall-realm.json that says which scopes a client may ask for.
type realm struct {
	ClientScopes []struct{ Name string }
	Clients      []struct {
		ClientID             string `json:"clientId"`
		DefaultClientScopes  []string
		OptionalClientScopes []string
	}
}

// grantable are the scopes the realm lets a client ask for: its default and optional client scopes, and
// openid, which Keycloak always accepts.
func (r *realm) grantable(clientID string) []string {
	for _, c := range r.Clients {
		if c.ClientID == clientID {
			return append(append([]string{"openid"}, c.DefaultClientScopes...), c.OptionalClientScopes...)
		}
	}
	return nil
}

// realmClients are the realm's clients of each API (config/clients.yaml apis[]; retired-app left out, inactive).
var realmClients = map[string][]string{
	"patient-access":  {"patient-app", "provider-app"},
	"provider-access": {"provider-app", "provider-org-a", "provider-org-b"},
	"payer-to-payer":  {"payer-b", "payer-c"},
	"prior-auth":      {"provider-app", "provider-org-a", "provider-org-b"},
	// A sandbox advertises its base API's discovery (config apis[].sandbox_of); its apps are registered with
	// the scopes the base's clients are offered.
	"patient-access-sandbox":  {"patient-app", "provider-app"},
	"provider-access-sandbox": {"provider-app", "provider-org-a", "provider-org-b"},
	"payer-to-payer-sandbox":  {"payer-b", "payer-c"},
	"prior-auth-sandbox":      {"provider-app", "provider-org-a", "provider-org-b"},
}

// TestScopesSupportedAreWhatTheRealmGrants: every scope discovery advertises is one the realm offers one of
// the API's clients (asking for any other fails the whole authorization with invalid_scope), and every
// resource scope the realm offers them for a type the API serves, granular category scopes included, is
// advertised.
func TestScopesSupportedAreWhatTheRealmGrants(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(capabilitytest.Root(), "config", "keycloak", "fhirwall-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r realm
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	apis := exampleAPIs(t)
	for _, a := range apis {
		var sc struct {
			ScopesSupported []string `json:"scopes_supported"`
		}
		render(t, apis, a.Prefix+"/.well-known/smart-configuration", &sc)
		var offered []string
		for _, c := range realmClients[a.Name] {
			g := r.grantable(c)
			if g == nil {
				t.Fatalf("realm has no client %s", c)
			}
			offered = append(offered, g...)
		}
		for _, s := range sc.ScopesSupported {
			if !slices.Contains(offered, s) {
				t.Errorf("%s advertises %q, which the realm offers none of its clients %v", a.Name, s, realmClients[a.Name])
			}
		}
		types := map[string]bool{"*": true}
		for _, res := range a.Resources {
			types[res.Type] = true
		}
		for _, o := range a.Operations {
			types[o.Type] = true // system/Group.read is what a Group $export needs
		}
		contexts := map[string][]string{"patient-access": {"patient/"}, "provider-access": {"system/"}, "payer-to-payer": {"system/"},
			"prior-auth": {"system/", "user/"}}[a.Name]
		for _, s := range offered {
			for _, context := range contexts {
				rest, ok := strings.CutPrefix(s, context)
				if !ok {
					continue
				}
				if typ, _, _ := strings.Cut(rest, "."); types[typ] && !slices.Contains(sc.ScopesSupported, s) {
					t.Errorf("%s: the realm offers %q for a type it serves, discovery does not advertise it", a.Name, s)
				}
			}
		}
		if a.Name == "patient-access" && !slices.Contains(sc.ScopesSupported, "patient/Observation.rs?category=laboratory") {
			t.Errorf("no granular category scope advertised: %v", sc.ScopesSupported)
		}
	}
}

// TestClientAuthCapabilitiesMatchTheAuthMethods: SMART 2.2 §Capabilities; client-confidential-symmetric is
// claimed iff client_secret_basic or client_secret_post is published, client-confidential-asymmetric iff
// private_key_jwt, whatever the configuration and the issuer say.
func TestClientAuthCapabilitiesMatchTheAuthMethods(t *testing.T) {
	for _, tc := range []struct {
		name             string
		caps, methods    []string
		idp              []string
		wantCaps, wantMs []string
	}{
		{"method without its capability is not published", []string{"client-public", "client-confidential-asymmetric"},
			[]string{"private_key_jwt", "client_secret_basic"}, nil, []string{"client-public", "client-confidential-asymmetric"}, []string{"private_key_jwt"}},
		{"both", []string{"client-confidential-symmetric", "client-confidential-asymmetric"},
			[]string{"private_key_jwt", "client_secret_post"}, nil, []string{"client-confidential-symmetric", "client-confidential-asymmetric"}, []string{"private_key_jwt", "client_secret_post"}},
		{"capability the issuer cannot honour is dropped", []string{"client-confidential-symmetric", "client-confidential-asymmetric"},
			[]string{"private_key_jwt", "client_secret_basic"}, []string{"private_key_jwt"}, []string{"client-confidential-asymmetric"}, []string{"private_key_jwt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			apis := exampleAPIs(t)
			apis[0].SMART.Capabilities, apis[0].SMART.TokenEndpointAuthMethods = tc.caps, tc.methods
			ep := keycloak(t)
			if tc.idp != nil {
				ep.TokenEndpointAuthMethodsSupported = tc.idp
			}
			w := get(t, newHandler(t, apis, &fakeDiscovery{ep: ep}), apis[0].Prefix+"/.well-known/smart-configuration", nil)
			var sc struct {
				Capabilities []string
				Methods      []string `json:"token_endpoint_auth_methods_supported"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &sc); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sc.Capabilities, tc.wantCaps) || !slices.Equal(sc.Methods, tc.wantMs) {
				t.Errorf("capabilities %v methods %v, want %v %v", sc.Capabilities, sc.Methods, tc.wantCaps, tc.wantMs)
			}
		})
	}
}

// TestDiscoveryNamesTheIssuersIntrospectionAndTheManagementPage: introspection_endpoint comes from the
// issuer's OIDC discovery document, management_endpoint from configuration (no discovery field names one),
// and neither is published when unknown.
func TestDiscoveryNamesTheIssuersIntrospectionAndTheManagementPage(t *testing.T) {
	apis := exampleAPIs(t)
	ep := keycloak(t) // Keycloak's document names its introspection endpoint
	var sc map[string]any
	w := get(t, newHandler(t, apis, &fakeDiscovery{ep: ep}), "/patient-access/fhir/.well-known/smart-configuration", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &sc); err != nil {
		t.Fatal(err)
	}
	if sc["introspection_endpoint"] != ep.IntrospectionEndpoint || sc["management_endpoint"] != ep.Issuer+"/account/applications" {
		t.Errorf("introspection %v management %v", sc["introspection_endpoint"], sc["management_endpoint"])
	}
	apis[0].SMART.ManagementEndpoint = ""
	ep = keycloak(t)
	ep.IntrospectionEndpoint = ""
	w = get(t, newHandler(t, apis, &fakeDiscovery{ep: ep}), "/patient-access/fhir/.well-known/smart-configuration", nil)
	if strings.Contains(w.Body.String(), "introspection_endpoint") || strings.Contains(w.Body.String(), "management_endpoint") {
		t.Errorf("published an endpoint nobody named: %s", w.Body)
	}
}

// TestEachFaceNamesItsOwnBase: fetched from the standalone proxy, implementation.url and the SMART security
// description name proxy.public_url, never Envoy's base (and never the request's Host).
func TestEachFaceNamesItsOwnBase(t *testing.T) {
	for _, standalone := range []bool{false, true} {
		apis, c := capabilitytest.Example(t, standalone)
		want := c.PublicURL
		if standalone {
			want = c.Proxy.PublicURL
		}
		for _, a := range apis {
			h := newHandler(t, apis, &fakeDiscovery{ep: keycloak(t)})
			w := get(t, h, a.Prefix+"/metadata", map[string][]string{"Host": {"attacker.example"}, "X-Forwarded-Host": {"attacker.example"}})
			var cs statement
			if err := json.Unmarshal(w.Body.Bytes(), &cs); err != nil {
				t.Fatal(err)
			}
			if cs.Implementation.URL != want+a.Prefix || strings.Contains(w.Body.String(), "attacker") {
				t.Errorf("standalone %v: %s implementation.url %q, want %q", standalone, a.Name, cs.Implementation.URL, want+a.Prefix)
			}
		}
	}
}

// TestProfilesAreTheAPIsGuides: claims carry CARIN BB's financial profiles on Patient Access and its
// non-financial ones on Provider Access (CMS-0057-F), clinical types US Core 6.1.0's.
func TestProfilesAreTheAPIsGuides(t *testing.T) {
	apis := exampleAPIs(t)
	profiles := map[string]map[string][]string{}
	guides := map[string][]string{}
	for _, a := range apis {
		var cs statement
		render(t, apis, a.Prefix+"/metadata", &cs)
		profiles[a.Name] = map[string][]string{}
		for _, r := range cs.Rest[0].Resource {
			profiles[a.Name][r.Type] = r.SupportedProfile
			// Group is only exported; PAS 2.0.1 profiles no Subscription (the backport's profile is in no
			// package the repository holds).
			if len(r.SupportedProfile) == 0 && r.Type != "Group" && r.Type != "Subscription" {
				t.Errorf("%s: %s has no supportedProfile", a.Name, r.Type)
			}
		}
		guides[a.Name] = cs.ImplementationGuide
	}
	const c4bb = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/"
	for _, tc := range []struct {
		api, typ, want string
		nonFinancial   bool
	}{
		{"patient-access", "ExplanationOfBenefit", c4bb + "C4BB-ExplanationOfBenefit-Pharmacy", false},
		{"provider-access", "ExplanationOfBenefit", c4bb + "C4BB-ExplanationOfBenefit-Pharmacy-NonFinancial", true},
		{"patient-access", "Coverage", c4bb + "C4BB-Coverage", false},
		{"patient-access", "Patient", c4bb + "C4BB-Patient", false},
		{"provider-access", "Observation", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab", false},
		{"patient-access", "Condition", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns", false},
	} {
		got := profiles[tc.api][tc.typ]
		if !slices.Contains(got, tc.want) {
			t.Errorf("%s %s: %v lacks %s", tc.api, tc.typ, got, tc.want)
		}
		for _, p := range got {
			if strings.Contains(p, "ExplanationOfBenefit") && strings.HasSuffix(p, "-NonFinancial") != tc.nonFinancial {
				t.Errorf("%s %s: %s", tc.api, tc.typ, p)
			}
		}
	}
	for api, want := range map[string][]string{
		"patient-access":  {"http://hl7.org/fhir/us/carin-bb/ImplementationGuide/hl7.fhir.us.carin-bb|2.0.0", "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core|6.1.0"},
		"provider-access": {"http://hl7.org/fhir/us/carin-bb/ImplementationGuide/hl7.fhir.us.carin-bb|2.0.0", "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core|6.1.0"},
	} {
		if !slices.Equal(guides[api], want) {
			t.Errorf("%s implementationGuide %v, want %v", api, guides[api], want)
		}
	}
}

// TestGuideProfilesExistInTheirPackages: every supportedProfile and implementationGuide the example
// statements name is a StructureDefinition or ImplementationGuide of the IG packages the repository holds
// (test/fixtures/fhir-packages), under its canonical URL and version.
func TestGuideProfilesExistInTheirPackages(t *testing.T) {
	canonical := map[string]bool{}
	dir := filepath.Join(capabilitytest.Root(), "test", "fixtures", "fhir-packages")
	for _, pkg := range []string{"hl7.fhir.us.carin-bb-2.0.0.tgz", "hl7.fhir.us.carin-bb-2.0.0-nonfinancial.tgz", "hl7.fhir.us.core-6.1.0.tgz",
		"hl7.fhir.us.davinci-pas-2.0.1.tgz"} {
		for _, res := range packageResources(t, filepath.Join(dir, pkg)) {
			if res.ResourceType == "StructureDefinition" && !res.Abstract {
				canonical[res.URL] = true
			}
			if res.ResourceType == "ImplementationGuide" {
				canonical[res.URL+"|"+strings.TrimSuffix(res.Version, "-dev-nonfinancial")] = true
			}
		}
	}
	apis := exampleAPIs(t)
	for _, a := range apis {
		var cs statement
		render(t, apis, a.Prefix+"/metadata", &cs)
		for _, ig := range cs.ImplementationGuide {
			if !canonical[ig] {
				t.Errorf("%s: implementationGuide %s is in no package", a.Name, ig)
			}
		}
		for _, r := range cs.Rest[0].Resource {
			for _, p := range r.SupportedProfile {
				if !canonical[p] {
					t.Errorf("%s: %s profile %s is in no package (or abstract)", a.Name, r.Type, p)
				}
			}
		}
	}
}

type packageResource struct {
	ResourceType, URL, Version string
	Abstract                   bool
}

func packageResources(t *testing.T, file string) []packageResource {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []packageResource
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(h.Name, ".json") || strings.Count(h.Name, "/") != 1 {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		var r packageResource
		if json.Unmarshal(b, &r) == nil && r.ResourceType != "" {
			out = append(out, r)
		}
	}
}
