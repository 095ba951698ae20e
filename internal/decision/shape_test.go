package decision

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/policy"
)

// fakeMemberPolicy allows a member's request with the obligations the real policy gives patient/*.rs.
type fakeMemberPolicy struct{}

func (fakeMemberPolicy) Decide(context.Context, any) (policy.Result, error) {
	return policy.Result{Allow: true, Status: 200, Obligations: policy.Obligations{
		Compartment:   &policy.Compartment{Patient: "member-01"},
		Narrow:        []policy.Narrow{{Param: "patient", Value: "member-01"}},
		ResourceTypes: map[string]policy.Constraints{"*": {}}, PublicTypes: []string{"Practitioner"},
	}}, nil
}
func (fakeMemberPolicy) Revision() string { return "fake-member" }

// fakeOwnCompartment says every resource read is the member's.
type fakeOwnCompartment struct{}

func (fakeOwnCompartment) Matches(context.Context, string, string, []policy.Narrow) (bool, error) {
	return true, nil
}

func decideMember(t *testing.T, method, path, query string, header http.Header) *Decision {
	t.Helper()
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	c.Policy, c.Compartment = fakeMemberPolicy{}, fakeOwnCompartment{}
	if header == nil {
		header = http.Header{}
	}
	in := Input{API: "patient-access", Method: method, Path: path, RawQuery: query,
		Authorization: []string{"Bearer patient-app"}, Header: header.Values}
	return c.Decide(context.Background(), in)
}

func TestShapingParametersNeverReachTheFHIRServer(t *testing.T) {
	d := decideMember(t, "GET", "/ExplanationOfBenefit", "_elements=patient,item&_summary=data&_total=accurate&_format=json&type=pharmacy", nil)
	if !d.Allow {
		t.Fatalf("refused: %v", d.Reasons)
	}
	q, _ := url.ParseQuery(d.UpstreamQuery)
	for _, k := range shapingParams {
		if q.Has(k) {
			t.Errorf("%s reached the FHIR server: %s", k, d.UpstreamQuery)
		}
	}
	if q.Get("patient") != "member-01" || q.Get("type") != "pharmacy" {
		t.Errorf("upstream query %s lost the narrowing or the client's own parameters", d.UpstreamQuery)
	}
	if got := d.Shape.Elements; len(got) != 2 || got[0] != "patient" || got[1] != "item" || d.Shape.Summary != "data" {
		t.Errorf("shape %+v", d.Shape)
	}
}

func TestAnUnshapedRequestKeepsItsRawQuery(t *testing.T) {
	d := decideMember(t, "GET", "/ExplanationOfBenefit", "patient=member-01&_count=5", nil)
	if !d.Allow || d.UpstreamQuery != "_count=5&patient=member-01" {
		t.Fatalf("allow %v, upstream %q", d.Allow, d.UpstreamQuery)
	}
	d = decideMember(t, "GET", "/ExplanationOfBenefit/e1", "", nil)
	if d.UpstreamQuery != "" {
		t.Fatalf("upstream %q for a query-less request", d.UpstreamQuery)
	}
}

func TestOnlyFHIRJSONIsServed(t *testing.T) {
	for _, tc := range []struct {
		query, accept string
		status        int
	}{
		{"_format=xml", "", 406},
		{"_format=application/fhir%2Bxml", "", 406},
		{"_format=text/turtle", "", 406},
		{"", "application/fhir+xml", 406},
		{"", "application/xml, text/html", 406},
		{"_format=json", "", 200},
		{"_format=application/fhir%2Bjson", "", 200},
		{"", "application/fhir+json", 200},
		{"", "text/html,application/xhtml+xml,*/*;q=0.8", 200},
		{"", "application/json;q=0.5, application/fhir+xml", 200},
	} {
		h := http.Header{}
		if tc.accept != "" {
			h.Set("Accept", tc.accept)
		}
		d := decideMember(t, "GET", "/Patient/member-01", tc.query, h)
		switch {
		case tc.status == 200 && !d.Allow:
			t.Errorf("%q / Accept %q refused: %v", tc.query, tc.accept, d.Reasons)
		case tc.status != 200 && (d.Allow || d.Refusal.Status != tc.status):
			t.Errorf("%q / Accept %q: allow %v status %d, want %d", tc.query, tc.accept, d.Allow, d.Refusal.Status, tc.status)
		}
	}
}

func TestShapingThatCannotBeAppliedAfterEnforcementIsRefused(t *testing.T) {
	for _, tc := range []struct {
		method, query, body, header string
	}{
		{"GET", "_summary=yes", "", ""},
		{"GET", "_summary=data&_summary=count", "", ""},
		{"GET", "_elements=patient.reference", "", ""},
		{"GET", "_elements=Patient.name", "", ""}, // another type's element on an EOB search
		{"GET", "_total=all", "", ""},
		{"POST", "", "_elements=patient", ""}, // a form body cannot be rewritten in Envoy mode
		{"GET", "", "", "If-Match"},
		{"GET", "", "", "If-Unmodified-Since"},
	} {
		h := http.Header{}
		path := "/ExplanationOfBenefit"
		if tc.method == "POST" {
			path += "/_search"
			h.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if tc.header != "" {
			h.Set(tc.header, `W/"1"`)
		}
		c, _, _ := newRegistryCore(fakeRealmRegistry())
		c.Policy, c.Compartment = fakeMemberPolicy{}, fakeOwnCompartment{}
		d := c.Decide(context.Background(), Input{API: "patient-access", Method: tc.method, Path: path, RawQuery: tc.query,
			Authorization: []string{"Bearer patient-app"}, Header: h.Values, Body: []byte(tc.body)})
		if d.Allow || d.Refusal.Status != 400 {
			t.Errorf("%s %q %q %s: allow %v status %d, want 400", tc.method, tc.query, tc.body, tc.header, d.Allow, d.Refusal.Status)
		}
	}
}

// TestElementsCannotHideWhoseResourceItIs: _elements=id,status would drop the patient reference; enforcement
// sees the whole resource and only then trims it.
func TestElementsCannotHideWhoseResourceItIs(t *testing.T) {
	c := newEnforcingCore()
	d := decisionFor(me)
	d.Shape = Shape{Elements: []string{"status"}}
	body := bundle("searchset", 2, nil, entry{eob("e1", me), "match"}, entry{eob("e2", other), "match"})
	got, err := c.EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got.Body), "e2") || strings.Contains(string(got.Body), other) {
		t.Fatalf("another patient's resource left: %s", got.Body)
	}
	if !strings.Contains(string(got.Body), `{"resourceType":"ExplanationOfBenefit","id":"e1","meta":{"tag":[{"code":"SUBSETTED"`) ||
		strings.Contains(string(got.Body), `"patient"`) || strings.Contains(string(got.Body), `"total":[`) {
		t.Fatalf("own resource not trimmed to the asked elements: %s", got.Body)
	}
	if !strings.HasPrefix(string(got.Body), `{"resourceType":"Bundle",`) {
		t.Fatalf("resourceType is not first: %s", got.Body)
	}
}

func TestIncludedResourcesAreHeldToTheScopeForTheirOwnType(t *testing.T) {
	patientOnly := map[string]policy.Constraints{"Patient": {}}
	vitals := map[string]policy.Constraints{"Observation": {"category": {"vital-signs"}}, "Patient": {}}
	vitalObs := strings.Replace(labObs("o2", me), `"code":"laboratory"`, `"code":"vital-signs"`, 1)
	task := `{"resourceType":"Task","id":"t1","status":"requested","intent":"order","for":{"reference":"Patient/` + me + `"}}`
	for _, tc := range []struct {
		name  string
		types map[string]policy.Constraints
		body  string
		want  []string
	}{
		{"a Patient.rs token gets no revincluded claims or observations", patientOnly,
			bundle("searchset", 1, nil, entry{patientRes(me), "match"}, entry{eob("e1", me), "include"}, entry{labObs("o1", me), "include"}),
			[]string{"Bundle/b1", "Patient/" + me}},
		{"a vital-signs token gets no lab result through an include", vitals,
			bundle("searchset", 1, nil, entry{patientRes(me), "match"}, entry{labObs("o1", me), "include"}, entry{vitalObs, "include"}),
			[]string{"Bundle/b1", "Patient/" + me, "Observation/o2"}},
		{"a type outside the compartment that is not public reference data never leaves", map[string]policy.Constraints{"*": {}},
			bundle("searchset", 1, nil, entry{patientRes(me), "match"}, entry{task, "include"}, entry{practitioner, "include"}),
			[]string{"Bundle/b1", "Patient/" + me, "Practitioner/pr1"}},
		{"public reference data still needs a scope for its type", patientOnly,
			bundle("searchset", 1, nil, entry{patientRes(me), "match"}, entry{practitioner, "include"}),
			[]string{"Bundle/b1", "Patient/" + me}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decisionFor(me)
			d.Policy.Obligations.ResourceTypes = tc.types
			got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(t, got.Body); strings.Join(g, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("returned %q, want %q", g, tc.want)
			}
		})
	}
}

func TestContainedResourcesOfTypesTheTokenDoesNotGrantAreRemoved(t *testing.T) {
	d := decisionFor(me)
	d.Policy.Obligations.ResourceTypes = map[string]policy.Constraints{"ExplanationOfBenefit": {}}
	res := strings.Replace(eob("e1", me), `"status"`, `"contained":[{"resourceType":"Observation","id":"c1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+me+`"}}],"status"`, 1)
	got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(res))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != 200 || strings.Contains(string(got.Body), "contained") {
		t.Fatalf("%d %s", got.Status, got.Body)
	}
}

func TestConditionalReadIsJudgedOnlyOnAVisibleResource(t *testing.T) {
	versioned := func(patient string) string {
		return strings.Replace(eob("e1", patient), `"status"`, `"meta":{"versionId":"3","lastUpdated":"2026-11-01T10:00:00.000+00:00"},"status"`, 1)
	}
	for _, tc := range []struct {
		name    string
		shape   Shape
		patient string
		status  int
	}{
		{"matching etag on own resource", Shape{IfNoneMatch: []string{`W/"3"`}}, me, 304},
		{"other etag on own resource", Shape{IfNoneMatch: []string{`W/"2"`}}, me, 200},
		{"matching etag on another's resource", Shape{IfNoneMatch: []string{`W/"3"`}}, other, 404},
		{"star on another's resource", Shape{IfNoneMatch: []string{`*`}}, other, 404},
		{"not modified since, own", Shape{IfModifiedSince: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}, me, 304},
		{"modified since, own", Shape{IfModifiedSince: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)}, me, 200},
		{"not modified since, another's", Shape{IfModifiedSince: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}, other, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decisionFor(me)
			d.Request = fhir.Request{Interaction: fhir.Read}
			d.Shape = tc.shape
			got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(versioned(tc.patient)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status {
				t.Fatalf("status %d, want %d", got.Status, tc.status)
			}
			switch tc.status {
			case 304:
				if len(got.Body) != 0 || got.Header["etag"] != `W/"3"` {
					t.Fatalf("304 with body %q, headers %v", got.Body, got.Header)
				}
			case 404:
				if string(got.Body) != string(outcome.NotFound.Body()) || got.Header != nil {
					t.Fatalf("404 differs from a missing resource's: %s %v", got.Body, got.Header)
				}
			}
		})
	}
}

func TestHistoryOfAResourceNobodyMayShowIsMissing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shape  Shape
		body   string
		status int
		total  bool
	}{
		{"every version another's", Shape{}, bundle("history", 2, nil, entry{labObs("o1", other), ""}, entry{labObs("o1", other), ""}), 404, false},
		{"_count=0 on another's", Shape{HistoryCountZero: true}, bundle("history", 2, nil, entry{labObs("o1", other), ""}), 404, false},
		{"_count=0 on own", Shape{HistoryCountZero: true}, bundle("history", 2, nil, entry{labObs("o1", me), ""}), 200, false},
		{"own with one version another's", Shape{}, bundle("history", 2, nil, entry{labObs("o1", me), ""}, entry{labObs("o1", other), ""}), 200, false},
		{"own first page of a history with another's version after it", Shape{}, bundle("history", 2,
			[]string{"self http://127.0.0.1:8090/fhir/Observation/o1/_history?_count=1", "next http://127.0.0.1:8090/fhir/Observation/o1/_history?_count=1&_offset=1"},
			entry{labObs("o1", me), ""}), 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decisionFor(me)
			d.Request = fhir.Request{Interaction: fhir.HistoryInstance}
			d.Shape = tc.shape
			got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", got.Status, tc.status, got.Body)
			}
			if tc.status == 404 && string(got.Body) != string(outcome.NotFound.Body()) {
				t.Fatalf("404 differs from a missing resource's: %s", got.Body)
			}
			var m map[string]any
			_ = json.Unmarshal(got.Body, &m)
			if _, has := m["total"]; has != tc.total || strings.Contains(string(got.Body), other) {
				t.Fatalf("history leaks a count or another patient: %s", got.Body)
			}
			if strings.Contains(string(got.Body), `"next"`) || strings.Contains(string(got.Body), "_offset") {
				t.Fatalf("a history page link tells that more versions exist: %s", got.Body)
			}
			if tc.shape.HistoryCountZero && m["entry"] != nil {
				t.Fatalf("_count=0 answered with entries: %s", got.Body)
			}
		})
	}
}

func TestSummaryCountIsTheCountOfWhatTheCallerMaySee(t *testing.T) {
	d := decisionFor("member-01")
	d.Shape = Shape{Summary: "count"}
	body := bundle("searchset", 3, nil, entry{eob("e1", me), "match"}, entry{eob("e2", other), "match"}, entry{eob("e3", me), "match"})
	got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Body) != `{"resourceType":"Bundle","id":"b1","total":2,"type":"searchset"}` {
		t.Fatalf("count answer %s", got.Body)
	}
	paged := bundle("searchset", 900, []string{"next http://127.0.0.1:8090/fhir?_getpages=x"}, entry{eob("e1", me), "match"})
	got, err = newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(paged))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != 400 || strings.Contains(string(got.Body), "900") {
		t.Fatalf("a count larger than one page was answered: %d %s", got.Status, got.Body)
	}
}

func TestUpstreamOutcomesLoseTextNamingResources(t *testing.T) {
	oo := `{"resourceType":"OperationOutcome","text":{"status":"generated","div":"<div>Patient/member-02</div>"},"issue":[{"severity":"warning","code":"processing","diagnostics":"HAPI-0001: Patient/member-02 has 3 versions"},{"severity":"information","code":"informational","diagnostics":"bad date"}]}`
	got, err := newEnforcingCore().EnforceResponse(context.Background(), decisionFor(me), 400, fhirJSON, []byte(oo))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got.Body), other) || !strings.Contains(string(got.Body), "bad date") {
		t.Fatalf("outcome %s", got.Body)
	}
}

func TestEncodeKeepsResourceTypeFirstAndEscapesOnlyWhatJSONNeeds(t *testing.T) {
	in := map[string]any{"zeta": "<a&b>\u2028\"\\\n", "resourceType": "Patient", "alpha": []any{map[string]any{"resourceType": "Practitioner", "id": "x"}}, "n": json.Number("1.50")}
	b, err := encode(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","alpha":[{"resourceType":"Practitioner","id":"x"}],"n":1.50,"zeta":"<a&b>\u2028\"\\\n"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil || back["zeta"] != in["zeta"] {
		t.Fatalf("round trip: %v %q", err, back["zeta"])
	}
}

func TestCountZeroIsCountedAfterEnforcement(t *testing.T) {
	d := decideMember(t, "GET", "/ExplanationOfBenefit", "_count=0", nil)
	q, _ := url.ParseQuery(d.UpstreamQuery)
	if !d.Allow || d.Shape.Summary != "count" || q.Get("_count") != "500" {
		t.Fatalf("allow %v shape %+v upstream %q", d.Allow, d.Shape, d.UpstreamQuery)
	}
}

func TestTheFHIRServerIsAlwaysAskedForJSON(t *testing.T) {
	for accept, want := range map[string]string{
		"": "application/fhir+json",
		"application/fhir+xml;q=1.0, application/fhir+json;q=0.1": "application/fhir+json",
		"*/*":                     "application/fhir+json",
		"application/fhir+ndjson": "", // a bulk export file: the client's own
	} {
		h := http.Header{}
		if accept != "" {
			h.Set("Accept", accept)
		}
		if got := decideMember(t, "GET", "/Patient/member-01", "", h).UpstreamAccept; got != want {
			t.Errorf("Accept %q: upstream %q, want %q", accept, got, want)
		}
	}
	h := http.Header{"Accept": {"application/fhir+json"}}
	if got := decideMember(t, "GET", "/Binary/export-file-1", "", h).UpstreamAccept; got != "application/fhir+ndjson" {
		t.Errorf("a bulk export file is asked as %q, want NDJSON", got)
	}
}

func TestPagingLinksCarryTheClientsShape(t *testing.T) {
	d := decisionFor(me)
	d.Shape = Shape{Elements: []string{"status"}}
	body := bundle("searchset", -1, []string{"next http://127.0.0.1:8090/fhir?_getpages=p1&_getpagesoffset=5&_count=5"}, entry{eob("e1", me), "match"})
	got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got.Body), "_elements=status") || !strings.Contains(string(got.Body), "_getpages=p1") {
		t.Fatalf("next link lost the shape or the page: %s", got.Body)
	}
}

func TestSummaryIsAppliedAfterEnforcement(t *testing.T) {
	d := decisionFor(me)
	d.Shape = Shape{Summary: "true"}
	body := bundle("searchset", 2, nil, entry{eob("e1", me), "match"}, entry{eob("e2", other), "match"})
	got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	b := string(got.Body)
	if strings.Contains(b, "e2") || !strings.Contains(b, `"id":"e1"`) || strings.Contains(b, `"careTeam"`) || !strings.Contains(b, "SUBSETTED") {
		t.Fatalf("summary: %s", b)
	}
}

func TestProvidersGetNoMoneyInOutcomes(t *testing.T) {
	d := decisionFor(me)
	d.Policy.Obligations.DataScope = "provider-access"
	body := bundle("searchset", -1, nil, entry{`{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","extension":[{"url":"x","valueMoney":{"value":12.5,"currency":"USD"}}]}]}`, "outcome"})
	got, err := newEnforcingCore().EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got.Body), "12.5") || strings.Contains(string(got.Body), "currency") {
		t.Fatalf("money left in an outcome: %s", got.Body)
	}
}
