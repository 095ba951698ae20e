//go:build e2e

package adversarial

// Issue 16's sandbox APIs, attacked as a sandbox app would: every request a FHIR client can shape to pull a
// real member's resource out of /patient-access-sandbox/fhir (includes, reverse chaining, _elements and
// _summary, contained resources, $everything, history, tag overrides, chained parameters, paging, batches,
// other formats), signed in as the sandbox member and as a real member who signed in to a sandbox app;
// and the sandbox app's token on the production APIs. Every 2xx answer may carry synthetic resources only.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackadmin"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	patientAccessSandbox = "/patient-access-sandbox/fhir"
	sandboxSystem        = "https://fhirwall.dev/CodeSystem/environment"
	escapeRedirect       = "http://127.0.0.1:8089/callback"
	escapeIssuer         = "http://127.0.0.1:8180/realms/fhirwall"
)

// realMemberMark matches a real seed member's id or member number anywhere in an answer.
var realMemberMark = regexp.MustCompile(`member-\d\d|FWM\d{4}`)

// escapeAdminToken is the registry admin API's bearer token (test/stackadmin), or the test stops.
func escapeAdminToken(t *testing.T) string { return stackadmin.Token(t) }

// escapeAdmin is one /admin/apps/ call through test/stackadmin, its status.
func escapeAdmin(t *testing.T, token, method, path string, body any) int {
	t.Helper()
	return stackadmin.Apps(testContext(t), t, client, token, method, path, body, nil)
}

// sandboxApp registers a public Patient Access sandbox app through the admin API (active at once, as the
// portal and DCR register one), deactivated when the test ends.
func sandboxApp(t *testing.T, scopes []string) string {
	t.Helper()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	id := "h8-sandbox-escape-" + hex.EncodeToString(suffix)
	tok := escapeAdminToken(t)
	reg := map[string]any{
		"client_id": id, "name": "H8 sandbox escape", "developer_org": "fhirwall adversarial",
		"contacts": []map[string]string{{"email": "h8@fhirwall.test"}}, "redirect_uris": []string{escapeRedirect},
		"launch_types": []string{"standalone"}, "token_endpoint_auth_method": "none",
		"requested_apis": []string{"patient-access"}, "requested_scopes": scopes,
		"environment": "sandbox", "tier": "standard", "reviewer": "h8",
	}
	switch st := escapeAdmin(t, tok, http.MethodPost, "", reg); {
	case st == http.StatusNotFound || st == http.StatusUnauthorized || st == http.StatusServiceUnavailable:
		require.Missing(t, fmt.Sprintf("registry admin API answered %d: the stack's registry admin API is not wired", st))
	case st >= 300:
		t.Fatalf("register %s: %d", id, st)
	}
	t.Cleanup(func() {
		escapeAdmin(t, tok, http.MethodPost, id+"/deactivate", map[string]string{"reviewer": "h8", "reason": "adversarial test over"})
	})
	return id
}

// signIn logs username in to the sandbox app, waiting for the registry's Keycloak sync to create it.
func signIn(t *testing.T, clientID string, scopes []string, username, password string) *smartclient.Token {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		tok, err := smartclient.AuthorizationCodePKCE(testContext(t), escapeIssuer, clientID, escapeRedirect, scopes, username, password,
			smartclient.WithAudience(stackenv.StandaloneURL+patientAccessSandbox))
		if err == nil {
			return tok
		}
		if time.Now().After(deadline) {
			require.Missing(t, fmt.Sprintf("cannot sign %s in to %s 20 s after its registration (%v): registry.keycloak sync not wired", username, clientID, err))
		}
	}
}

// syntheticOnly reports what in a 2xx answer is not synthetic: a resource without the sandbox tag (at any
// nesting: contained, Bundle entries, nested Bundles) or a real member's id or member number anywhere.
func syntheticOnly(a answer, c call) []string {
	var bad []string
	if m := realMemberMark.FindString(string(withoutEcho(a.body, c))); m != "" {
		bad = append(bad, "names "+m)
	}
	for _, r := range resources(a.body) {
		switch r["resourceType"] {
		case "Bundle", "OperationOutcome", nil:
			continue
		}
		tagged := false
		meta, _ := r["meta"].(map[string]any)
		for _, tg := range asObjects(meta["tag"]) {
			tagged = tagged || (tg["system"] == sandboxSystem && tg["code"] == "sandbox")
		}
		if !tagged {
			bad = append(bad, fmt.Sprintf("untagged %v/%v", r["resourceType"], r["id"]))
		}
	}
	if len(a.body) > 0 && !json.Valid(a.body) {
		bad = append(bad, "a body that is not JSON: "+a.header.Get("Content-Type"))
	}
	return bad
}

// withoutEcho is body without the request's own path: a searchset's self link repeats the client's query,
// which names what the client itself sent, not what the server holds.
func withoutEcho(body []byte, c call) []byte {
	return bytes.ReplaceAll(body, []byte(c.path), nil)
}

// sandboxEscapes are the requests a sandbox app shapes to pull real data out.
func sandboxEscapes(realPatient string) []call {
	batch := `{"resourceType":"Bundle","type":"batch","entry":[` +
		`{"request":{"method":"GET","url":"Patient/` + realPatient + `"}},` +
		`{"request":{"method":"GET","url":"ExplanationOfBenefit?patient=` + realPatient + `"}}]}`
	return []call{
		get("/Patient/" + realPatient),
		get("/Patient/" + realPatient + "/$everything"),
		get("/Patient/sandbox-01/$everything"),
		get("/Patient/" + realPatient + "/_history"),
		get("/Patient/" + realPatient + "/_history/1"),
		get("/Patient/_history"),
		get("/_history"),
		get("/ExplanationOfBenefit/_history"),
		get("/Patient?_id=" + realPatient),
		get("/Patient?_id=sandbox-01," + realPatient),
		get("/ExplanationOfBenefit?patient=" + realPatient),
		get("/ExplanationOfBenefit?patient=sandbox-01&_include=*"),
		get("/ExplanationOfBenefit?_include=ExplanationOfBenefit:patient&_include=ExplanationOfBenefit:provider&_include=ExplanationOfBenefit:insurer&_include=ExplanationOfBenefit:coverage"),
		get("/Patient?_revinclude=*"),
		get("/Patient?_revinclude=ExplanationOfBenefit:patient&_revinclude=Coverage:beneficiary"),
		get("/Coverage?_include=Coverage:beneficiary&_include:iterate=Patient:link"),
		get("/Patient?_has:ExplanationOfBenefit:patient:_id=x"),
		get("/Patient?_has:Coverage:beneficiary:status=active"),
		get("/Patient?_elements=id,identifier,name"),
		get("/Patient/" + realPatient + "?_elements=id"),
		get("/Patient/" + realPatient + "?_summary=true"),
		get("/Patient?_summary=count"),
		get("/Patient?_summary=count&_tag:not=" + sandboxSystem + "|sandbox"),
		get("/Patient?_tag=http://example.org|real"),
		get("/Patient?_tag:not=" + sandboxSystem + "|sandbox"),
		get("/Patient?_tag:missing=true"),
		get("/Patient?_tag:text=sandbox"),
		get("/Patient?_security:not=x"),
		get("/ExplanationOfBenefit?patient:Patient.identifier=FWM0001"),
		get("/ExplanationOfBenefit?patient.name=a"),
		get("/Observation?subject:Patient._id=" + realPatient),
		get("/Patient?_count=1"),
		get("/Patient?_format=xml"),
		get("/Patient/"+realPatient, "Accept", "application/fhir+xml"),
		get("/Patient?_contained=true&_containedType=contained"),
		get("/Patient?_list=x"),
		get("/Patient?_query=x"),
		get("/$export"),
		get("/Patient/$export"),
		{method: http.MethodPost, path: "/", header: map[string]string{"Content-Type": "application/fhir+json"}, body: batch},
		{method: http.MethodPost, path: "/Patient/_search", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "_id=" + realPatient + "&_tag:not=" + sandboxSystem + "|sandbox"},
		{method: http.MethodPost, path: "/$graphql", header: map[string]string{"Content-Type": "application/json"}, body: `{"query":"{PatientList{id name{family}}}"}`},
	}
}

func TestSandboxAnswersCarryOnlySyntheticResourcesWhateverTheRequest(t *testing.T) {
	evidence.Proves(t, "SEC-05")
	if a, err := send(testContext(t), modes()[1], patientAccessSandbox, "", get("/.well-known/smart-configuration")); err != nil || a.status != http.StatusOK {
		require.Missing(t, fmt.Sprintf("the standalone proxy does not serve %s (%v %v): restart the stack's fhirwall built from this tree", patientAccessSandbox, a.status, err))
	}
	scopes := []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}
	app := sandboxApp(t, scopes)
	sam := signIn(t, app, scopes, "sandbox-sam", "password")
	// A real member may sign in to a sandbox app too: their token names their real patient id, and still
	// nothing of theirs leaves a sandbox.
	real := signIn(t, app, scopes, "member01", "fhirwall-demo")
	if real.Patient == "" || real.Patient == "sandbox-01" {
		t.Fatalf("member01's token names patient %q", real.Patient)
	}
	for _, who := range []struct {
		name  string
		token string
	}{{"sandbox-sam", sam.AccessToken}, {"member01 via a sandbox app", real.AccessToken}} {
		for _, m := range modes() {
			for _, c := range sandboxEscapes(real.Patient) {
				t.Run(who.name+"/"+m.name+"/"+c.String(), func(t *testing.T) {
					a, err := send(testContext(t), m, patientAccessSandbox, who.token, c)
					if err != nil {
						t.Fatal(err)
					}
					t.Logf("%s %s: %d", who.name, c, a.status)
					if a.status >= 200 && a.status < 300 {
						if bad := syntheticOnly(a, c); len(bad) > 0 {
							t.Errorf("%s: real data left a sandbox: %v\n%s", c, bad, a)
						}
					} else if a.status != http.StatusNotModified && !bytes.Contains(a.body, []byte(`"OperationOutcome"`)) && len(bytes.TrimSpace(a.body)) > 0 {
						t.Errorf("%s: %d without an OperationOutcome: %s", c, a.status, a)
					}
					if realMemberMark.Match(withoutEcho(a.body, c)) {
						t.Errorf("%s: the answer names a real member: %s", c, a)
					}
					// Follow a next link once: a page is a request too.
					if next := link(a, "next"); next != "" && a.status == http.StatusOK {
						p, err := send(testContext(t), m, patientAccessSandbox, who.token, get(relative(t, next, patientAccessSandbox)))
						if err == nil && p.status == http.StatusOK {
							if bad := syntheticOnly(p, get(relative(t, next, patientAccessSandbox))); len(bad) > 0 {
								t.Errorf("%s next page: real data left a sandbox: %v", c, bad)
							}
						}
					}
				})
			}
		}
	}
}

func TestSandboxAppTokenReachesNoProductionAPI(t *testing.T) {
	evidence.Proves(t, "SEC-05")
	if a, err := send(testContext(t), modes()[1], patientAccessSandbox, "", get("/.well-known/smart-configuration")); err != nil || a.status != http.StatusOK {
		require.Missing(t, fmt.Sprintf("the standalone proxy does not serve %s: restart the stack's fhirwall built from this tree", patientAccessSandbox))
	}
	scopes := []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}
	app := sandboxApp(t, scopes)
	real := signIn(t, app, scopes, "member01", "fhirwall-demo")
	for _, m := range modes() {
		for _, api := range []string{patientAccess, providerAccess, payerToPayer, "/prior-auth/fhir"} {
			for _, c := range []call{get("/Patient/" + real.Patient), get("/ExplanationOfBenefit?patient=" + real.Patient), get("/Patient?_id=" + real.Patient)} {
				t.Run(m.name+api+c.String(), func(t *testing.T) {
					a, err := send(testContext(t), m, api, real.AccessToken, c)
					if err != nil {
						t.Fatal(err)
					}
					if a.status != http.StatusUnauthorized && a.status != http.StatusForbidden {
						t.Errorf("a sandbox app's token on %s: %s, want 401 or 403", api, a)
					}
					if realMemberMark.Match(withoutEcho(a.body, c)) && a.status < 300 {
						t.Errorf("a sandbox app's token read real data on %s: %s", api, a)
					}
				})
			}
		}
	}
}

// An app a reviewer suspends or deactivates loses access at once, tokens issued before included, in both
// modes; reactivated, its tokens work again.
func TestSuspendedOrDeactivatedAppsTokensAreRefusedInBothModes(t *testing.T) {
	evidence.Proves(t, "CMS-PA-06")
	if a, err := send(testContext(t), modes()[1], patientAccessSandbox, "", get("/.well-known/smart-configuration")); err != nil || a.status != http.StatusOK {
		require.Missing(t, fmt.Sprintf("the standalone proxy does not serve %s: restart the stack's fhirwall built from this tree", patientAccessSandbox))
	}
	scopes := []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}
	app := sandboxApp(t, scopes)
	tok := signIn(t, app, scopes, "sandbox-sam", "password").AccessToken
	admin := escapeAdminToken(t)
	own := get("/Patient/sandbox-01")
	// eventually waits up to 10 s for every mode to answer want (the registry's view follows its changes).
	eventually := func(when string, want func(int) bool) {
		t.Helper()
		for _, m := range modes() {
			var a answer
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				var err error
				if a, err = send(testContext(t), m, patientAccessSandbox, tok, own); err != nil {
					t.Fatal(err)
				}
				if want(a.status) || time.Now().After(deadline) {
					break
				}
			}
			if !want(a.status) {
				t.Fatalf("%s: %s", when, a)
			}
		}
	}
	allowed := func(s int) bool { return s == http.StatusOK }
	refused := func(s int) bool { return s == http.StatusUnauthorized || s == http.StatusForbidden }
	eventually("active", allowed)
	if st := escapeAdmin(t, admin, http.MethodPost, app+"/suspend", map[string]string{"reviewer": "h8", "reason": "adversarial: suspended"}); st >= 300 {
		t.Fatalf("suspend: %d", st)
	}
	eventually("suspended", refused)
	if st := escapeAdmin(t, admin, http.MethodPost, app+"/reactivate", map[string]string{"reviewer": "h8", "reason": "adversarial: back"}); st >= 300 {
		t.Fatalf("reactivate: %d", st)
	}
	eventually("reactivated", allowed)
	if st := escapeAdmin(t, admin, http.MethodPost, app+"/deactivate", map[string]string{"reviewer": "h8", "reason": "adversarial: gone"}); st >= 300 {
		t.Fatalf("deactivate: %d", st)
	}
	eventually("deactivated", refused)
}

// A sandbox app's token with paths that name a production API through the sandbox's prefix (dot segments,
// their encodings, doubled slashes, a Host header) reaches no real member in either mode.
func TestSandboxTokenCannotWalkIntoAProductionAPIByPath(t *testing.T) {
	evidence.Proves(t, "SEC-05")
	if a, err := send(testContext(t), modes()[1], patientAccessSandbox, "", get("/.well-known/smart-configuration")); err != nil || a.status != http.StatusOK {
		require.Missing(t, fmt.Sprintf("the standalone proxy does not serve %s: restart the stack's fhirwall built from this tree", patientAccessSandbox))
	}
	scopes := []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}
	app := sandboxApp(t, scopes)
	real := signIn(t, app, scopes, "member01", "fhirwall-demo")
	target := "/Patient/" + real.Patient
	for _, m := range modes() {
		for _, c := range []call{
			get(patientAccessSandbox + "/../../patient-access/fhir" + target),
			get(patientAccessSandbox + "/%2e%2e/%2e%2e/patient-access/fhir" + target),
			get(patientAccessSandbox + "%2F..%2F..%2Fpatient-access%2Ffhir" + target),
			get("/patient-access-sandbox/../patient-access/fhir" + target),
			get("/./patient-access/fhir" + target),
			get("/patient-access-sandbox//fhir/../../patient-access/fhir" + target),
			get("/patient-access-sandbox/fhir/..%2F..%2Fpatient-access/fhir" + target),
			get("/patient-access/fhir/../../patient-access-sandbox/fhir" + target),
			get("/PATIENT-ACCESS/fhir" + target),
			get("/patient-access/fhir/" + target),
			get("/patient-access/fhir;x=y" + target),
			get("/patient-access-sandbox/fhir"+target, "Host", "127.0.0.1:8080", "X-Original-URL", "/patient-access/fhir"+target, "X-Envoy-Original-Path", "/patient-access/fhir"+target),
		} {
			t.Run(m.name+c.String(), func(t *testing.T) {
				a, err := send(testContext(t), m, "", real.AccessToken, c)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d", a.status)
				if a.status >= 200 && a.status < 300 {
					if bad := syntheticOnly(a, c); len(bad) > 0 {
						t.Errorf("real data reached a sandbox app's token: %v\n%s", bad, a)
					}
				}
			})
		}
	}
}

// A production app's token is not a sandbox app's: the sandbox APIs refuse it (it would otherwise carry a
// real member's compartment into an API whose rules were written for synthetic data).
func TestProductionTokenIsRefusedOnTheSandboxAPIs(t *testing.T) {
	evidence.Proves(t, "SEC-05")
	if a, err := send(testContext(t), modes()[1], patientAccessSandbox, "", get("/.well-known/smart-configuration")); err != nil || a.status != http.StatusOK {
		require.Missing(t, fmt.Sprintf("the standalone proxy does not serve %s: restart the stack's fhirwall built from this tree", patientAccessSandbox))
	}
	tok, err := stackauth.Member(testContext(t), "member01", "openid", "fhirUser", "launch/patient", "patient/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range modes() {
		for _, c := range []call{get("/Patient/" + tok.Patient), get("/Patient/sandbox-01"), get("/ExplanationOfBenefit")} {
			t.Run(m.name+c.String(), func(t *testing.T) {
				a, err := send(testContext(t), m, patientAccessSandbox, tok.AccessToken, c)
				if err != nil {
					t.Fatal(err)
				}
				if a.status != http.StatusUnauthorized && a.status != http.StatusForbidden {
					t.Errorf("patient-app's token on the sandbox: %s, want 401 or 403", a)
				}
			})
		}
	}
}
