package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/token"
)

const sandboxMember = "sandbox-01"

// synthetic tags a resource of the test fixtures as sandbox data, as the seed's sandbox member is.
func synthetic(res string) string {
	return strings.Replace(res, `"id":`, `"meta":{"tag":[{"system":"`+datascope.EnvironmentSystem+`","code":"sandbox"}]},"id":`, 1)
}

func sandboxDecision(patient string) *Decision {
	d := decisionFor(patient)
	d.Input.API = "patient-access-sandbox"
	return d
}

func TestSandboxSuffixIsConfigs(t *testing.T) {
	if sandboxSuffix != config.SandboxSuffix {
		t.Fatalf("decision keys sandboxes on %q, config names them with %q", sandboxSuffix, config.SandboxSuffix)
	}
	for _, api := range config.KnownAPIs {
		if strings.HasSuffix(api, config.SandboxSuffix) && !isSandbox(api) {
			t.Errorf("%s is not held to synthetic data", api)
		}
	}
	if isSandbox("-sandbox") || isSandbox("patient-access") || baseAPI("provider-access-sandbox") != "provider-access" {
		t.Error("sandbox names misread")
	}
}

func TestSandboxReadOfUntaggedResourceIsNotFound(t *testing.T) {
	c := newEnforcingCore()
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"tagged patient of the sandbox member", synthetic(patientRes(sandboxMember)), 200},
		{"untagged patient, even the token's own", patientRes(sandboxMember), 404},
		{"tagged EOB", synthetic(eob("e1", sandboxMember)), 200},
		{"tag of another system", strings.Replace(synthetic(eob("e1", sandboxMember)), datascope.EnvironmentSystem, "https://example.org/env", 1), 404},
		{"tagged container with an untagged contained resource",
			strings.Replace(synthetic(eob("e1", sandboxMember)), `"status"`, `"contained":[{"resourceType":"Practitioner","id":"c"}],"status"`, 1), 404},
		{"tagged container with a tagged contained resource",
			strings.Replace(synthetic(eob("e1", sandboxMember)), `"status"`, `"contained":[`+synthetic(`{"resourceType":"Practitioner","id":"c"}`)+`],"status"`, 1), 200},
		{"untagged public reference data", practitioner, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := sandboxDecision(sandboxMember)
			d.Request = fhir.Request{Interaction: fhir.Read}
			out, err := c.EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(tc.body))
			if err != nil || out.Status != tc.want {
				t.Fatalf("status %d (%v), want %d", out.Status, err, tc.want)
			}
		})
	}
}

func TestSandboxBundleKeepsOnlyTaggedEntriesIncludedOnesToo(t *testing.T) {
	c := newEnforcingCore()
	body := bundle("searchset", 4, nil,
		entry{synthetic(eob("e1", sandboxMember)), "match"},
		entry{eob("e2", sandboxMember), "match"},    // untagged: however it got there
		entry{synthetic(practitioner), "include"},   // tagged reference data
		entry{patientRes(sandboxMember), "include"}, // untagged _include
		entry{`{"resourceType":"OperationOutcome","issue":[]}`, "outcome"})
	out, err := c.EnforceResponse(context.Background(), sandboxDecision(sandboxMember), 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := ids(t, out.Body)
	want := []string{"Bundle/b1", "ExplanationOfBenefit/e1", "Practitioner/pr1", "OperationOutcome/<nil>"}
	if !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
	var b map[string]any
	// One page, no next link: the total is recounted from what is left (Invariant 3), never the server's 4.
	if err := json.Unmarshal(out.Body, &b); err != nil || b["total"] != 1.0 {
		t.Fatalf("Bundle.total %v, want the one match left (%v)", b["total"], err)
	}
}

func TestProductionAPIPassesSandboxTaggedAndUntaggedAlike(t *testing.T) {
	c := newEnforcingCore()
	body := bundle("searchset", 2, nil, entry{synthetic(eob("e1", me)), "match"}, entry{eob("e2", me), "match"})
	out, err := c.EnforceResponse(context.Background(), decisionFor(me), 200, fhirJSON, []byte(body))
	if err != nil || len(ids(t, out.Body)) != 3 {
		t.Fatalf("production answer lost entries: %v %v", ids(t, out.Body), err)
	}
}

func TestSandboxHistoryDeleteEntryWithoutResourceDoesNotLeave(t *testing.T) {
	c := newEnforcingCore()
	d := sandboxDecision(sandboxMember)
	d.Policy.Obligations.Compartment = nil // even without a compartment obligation
	body := `{"resourceType":"Bundle","id":"b1","type":"history","entry":[{"fullUrl":"http://x/Observation/o1","request":{"method":"DELETE","url":"Observation/o1"}},{"resource":` + synthetic(labObs("o2", sandboxMember)) + `}]}`
	out, err := c.EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, out.Body); !slices.Equal(got, []string{"Bundle/b1", "Observation/o2"}) {
		t.Fatalf("left %v", got)
	}
}

func TestSandboxSearchIsNarrowedToTheSandboxTagAndClientTagCannotWidenIt(t *testing.T) {
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	c.Registry = &fakeRegistry{clients: map[string]Client{"patient-app": {ID: "patient-app", Active: true,
		APIs: []string{"patient-access-sandbox"}, Scopes: []string{"patient/*.rs"}}}}
	c.Policy, c.Compartment = fakeMemberPolicy{}, fakeOwnCompartment{}
	for _, query := range []string{"", "_tag=https://fhirwall.dev/CodeSystem/environment|production", "_tag:not=" + datascope.SandboxTag} {
		in := Input{API: "patient-access-sandbox", Method: "GET", Path: "/ExplanationOfBenefit", RawQuery: query,
			Authorization: []string{"Bearer patient-app"}, Header: http.Header{}.Values}
		d := c.Decide(context.Background(), in)
		if !d.Allow {
			t.Fatalf("%q refused: %v", query, d.Reasons)
		}
		q, _ := url.ParseQuery(d.UpstreamQuery)
		// _tag is set, not added to; a modifier of the client's (_tag:not) can only narrow further, parameters
		// being ANDed (and the policies' allow-lists refuse it before this).
		if got := q["_tag"]; !slices.Equal(got, []string{datascope.SandboxTag}) {
			t.Errorf("%q: upstream %s, want _tag=%s alone", query, d.UpstreamQuery, datascope.SandboxTag)
		}
	}
	in := Input{API: "patient-access", Method: "GET", Path: "/ExplanationOfBenefit", Authorization: []string{"Bearer patient-app"}, Header: http.Header{}.Values}
	c.Registry = fakeRealmRegistry()
	if d := c.Decide(context.Background(), in); !d.Allow || strings.Contains(d.UpstreamQuery, "_tag") {
		t.Errorf("production search: allow %v, upstream %s", d.Allow, d.UpstreamQuery)
	}
}

func TestProviderAccessSandboxIsDecidedWithAttributionFacts(t *testing.T) {
	lists := map[string]AttributionList{"Organization/sandbox-org": NewAttributionList("attribution-sandbox-org", []string{sandboxMember})}
	for _, api := range []string{"provider-access-sandbox", "provider-access"} {
		c := &Core{Attribution: &fakeAttribution{lists: lists}, Consent: &fakeConsent{out: map[string]bool{}}}
		d := &Decision{Input: Input{API: api}, Identity: &token.Identity{ClientID: "sandbox-provider", Org: "Organization/sandbox-org"},
			Request: fhir.Request{Interaction: fhir.SearchType, ResourceType: "Observation", Params: []fhir.Param{
				{Key: "patient", Name: "patient", Values: []string{sandboxMember}}}}}
		input := map[string]any{}
		if !c.addFacts(context.Background(), d, input) {
			t.Fatalf("%s: facts refused: %v", api, d.Reasons)
		}
		facts, _ := input["facts"].(map[string]any)
		if facts["provider"] != "Organization/sandbox-org" || facts["attribution_group"] != "attribution-sandbox-org" || d.members == nil {
			t.Errorf("%s: facts %v, want the sandbox organisation's attribution", api, facts)
		}
	}
}

// FuzzEnforceSandbox: whatever the upstream sends, a sandbox answer never carries a resource without the
// sandbox tag (checked by walking the output again with the same rule) and enforcement never panics.
func FuzzEnforceSandbox(f *testing.F) {
	f.Add([]byte(bundle("searchset", 2, nil, entry{synthetic(eob("e1", sandboxMember)), "match"}, entry{eob("e2", sandboxMember), "include"})))
	f.Add([]byte(bundle("batch-response", -1, nil, entry{bundle("searchset", 1, nil, entry{labObs("o", sandboxMember), "match"}), ""})))
	f.Add([]byte(strings.Replace(synthetic(eob("e3", sandboxMember)), `"status"`, `"contained":[{"resourceType":"Patient","id":"x"}],"status"`, 1)))
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"response":{"status":"200","outcome":{"resourceType":"Patient","id":"sandbox-01"}}}]}`))
	c := newEnforcingCore()
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := c.EnforceResponse(context.Background(), sandboxDecision(sandboxMember), 200, fhirJSON, body)
		if err != nil || got.Status != 200 || len(bytes.TrimSpace(got.Body)) == 0 {
			return
		}
		var root map[string]any
		if err := json.Unmarshal(got.Body, &root); err != nil {
			t.Fatalf("enforced body is not a JSON object: %q", got.Body)
		}
		var check func(map[string]any)
		check = func(r map[string]any) {
			if r["resourceType"] != "Bundle" {
				if !datascope.Synthetic(r) {
					t.Fatalf("untagged resource left a sandbox answer: %v", r)
				}
				return
			}
			entries, _ := r["entry"].([]any)
			for _, e := range entries {
				em, _ := e.(map[string]any)
				if res, ok := em["resource"].(map[string]any); ok {
					check(res)
				}
				if resp, ok := em["response"].(map[string]any); ok {
					if oc, ok := resp["outcome"].(map[string]any); ok {
						check(oc)
					}
				}
			}
		}
		check(root)
	})
}

// fakeAdapter answers every request with its body.
type fakeAdapter struct{ body string }

func (f fakeAdapter) Serve(context.Context, *Decision, string) (Answer, error) {
	return Answer{Status: http.StatusOK, Body: []byte(f.body)}, nil
}

// An adapter's answer to a sandbox request leaves only if every resource in it is synthetic: the core checks
// behind the adapter as it checks the FHIR server's answers. Production answers are not held to the tag.
func TestAdapterAnswersOnASandboxAPIMustBeSynthetic(t *testing.T) {
	untagged := `{"resourceType":"Parameters","parameter":[{"name":"MemberIdentifier","resource":{"resourceType":"Patient","id":"member-01"}}]}`
	tagged := synthetic(`{"resourceType":"Parameters","id":"match","parameter":[{"name":"MemberIdentifier","resource":` +
		synthetic(`{"resourceType":"Patient","id":"sandbox-01"}`) + `}]}`)
	for _, tc := range []struct {
		name, api, body string
		want            int
	}{
		{"sandbox, a real member inside", "payer-to-payer-sandbox", untagged, http.StatusServiceUnavailable},
		{"sandbox, all synthetic", "payer-to-payer-sandbox", tagged, http.StatusOK},
		{"sandbox, not JSON", "payer-to-payer-sandbox", "member-01", http.StatusServiceUnavailable},
		{"sandbox, a manifest (no resource)", "payer-to-payer-sandbox", `{"transactionTime":"2026-12-07T00:00:00Z","output":[]}`, http.StatusOK},
		{"sandbox, empty (202 kick-off)", "payer-to-payer-sandbox", "", http.StatusOK},
		{"production, untagged", "payer-to-payer", untagged, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newEnforcingCore()
			c.Adapters = map[string]Adapter{"fake": fakeAdapter{body: tc.body}}
			d := decisionFor("")
			d.Input.API = tc.api
			d.Policy.Obligations.Adapter = "fake"
			if got := c.Answer(context.Background(), d); got.Status != tc.want {
				t.Fatalf("status %d, want %d (%s)", got.Status, tc.want, got.Body)
			}
		})
	}
}
