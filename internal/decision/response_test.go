package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

const (
	me       = "member-01"
	other    = "member-02"
	fhirJSON = "application/fhir+json;charset=utf-8"
)

// Resources shaped like the seed templates (test/seed/testdata/templates), trimmed to what enforcement reads.
func eob(id, patient string) string {
	return fmt.Sprintf(`{"resourceType":"ExplanationOfBenefit","id":%q,"status":"active","use":"claim",
"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},
"patient":{"reference":"Patient/%s"},"insurer":{"reference":"Organization/payer"},
"provider":{"reference":"Organization/prov"},"careTeam":[{"sequence":1,"provider":{"reference":"Practitioner/pr1"}}],
"total":[{"category":{"coding":[{"code":"submitted"}]},"amount":{"value":120.50,"currency":"USD"}}]}`, id, patient)
}

func labObs(id, patient string) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final",
"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"subject":{"reference":"Patient/%s"},
"performer":[{"reference":"Organization/lab"}],"valueQuantity":{"value":5.70,"unit":"%%"}}`, id, patient)
}

func patientRes(id string) string {
	return fmt.Sprintf(`{"resourceType":"Patient","id":%q,"name":[{"family":"Doe"}]}`, id)
}

const practitioner = `{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Smith"}]}`

type entry struct{ resource, mode string }

func bundle(typ string, total int, links []string, entries ...entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":"Bundle","id":"b1","type":%q`, typ)
	if total >= 0 {
		fmt.Fprintf(&b, `,"total":%d`, total)
	}
	if len(links) > 0 {
		b.WriteString(`,"link":[`)
		for i, l := range links {
			if i > 0 {
				b.WriteString(",")
			}
			rel, u, _ := strings.Cut(l, " ")
			fmt.Fprintf(&b, `{"relation":%q,"url":%q}`, rel, u)
		}
		b.WriteString("]")
	}
	b.WriteString(`,"entry":[`)
	for i, e := range entries {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"resource":` + e.resource)
		if e.mode != "" {
			b.WriteString(`,"search":{"mode":"` + e.mode + `"}`)
		}
		b.WriteString("}")
	}
	b.WriteString("]}")
	return b.String()
}

func newEnforcingCore() *Core {
	return &Core{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now, Policy: fakeAllowPolicy{},
		UpstreamBase: "http://127.0.0.1:8090/fhir",
		PublicBase:   func(api string) string { return "https://api.example/" + api + "/fhir" },
		Pages:        &InMemoryPages{}}
}

func decisionFor(patient string) *Decision {
	d := &Decision{ID: "d1", Allow: true, Input: Input{API: "patient-access"},
		Identity: &token.Identity{ClientID: "patient-app", Patient: patient, Scopes: []string{"patient/*.rs"}},
		Request:  fhir.Request{Interaction: fhir.SearchType}}
	if patient != "" {
		d.Policy.Obligations.Compartment = &policy.Compartment{Patient: patient}
		d.Policy.Obligations.ResourceTypes = map[string]policy.Constraints{"*": {}}
		d.Policy.Obligations.PublicTypes = []string{"Practitioner"}
	}
	return d
}

// ids returns "Type/id" of every resource in a body, at every Bundle nesting level.
func ids(t *testing.T, body []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, body)
	}
	var out []string
	var walk func(map[string]any)
	walk = func(r map[string]any) {
		out = append(out, fmt.Sprintf("%v/%v", r["resourceType"], r["id"]))
		entries, _ := r["entry"].([]any)
		for _, e := range entries {
			if res, ok := e.(map[string]any)["resource"].(map[string]any); ok {
				walk(res)
			}
		}
	}
	walk(m)
	return out
}

func TestEnforceSingleResource(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		wantStatus int
		patients   []string
		categories []string
	}{
		{"own EOB passes", eob("e1", me), 200, []string{me}, []string{"claims"}},
		{"another patient's EOB is the same 404 as a missing one", eob("e2", other), 404, []string{}, []string{}},
		{"own Patient passes", patientRes(me), 200, []string{me}, []string{"demographics"}},
		{"another Patient is 404", patientRes(other), 404, []string{}, []string{}},
		{"practitioner passes", practitioner, 200, []string{}, []string{"other"}},
		{"a contained resource of another patient taints its container",
			strings.Replace(eob("e3", me), `"status"`, `"contained":[{"resourceType":"Observation","id":"c","subject":{"reference":"Patient/`+other+`"}}],"status"`, 1),
			404, []string{}, []string{}},
		{"a Group listing another patient is withheld (Group?member=)",
			`{"resourceType":"Group","id":"g","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/` + me + `"}},{"entity":{"reference":"Patient/` + other + `"}}]}`,
			404, []string{}, []string{}},
		{"a Group of only the patient passes",
			`{"resourceType":"Group","id":"g","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/` + me + `"}}]}`,
			200, []string{me}, []string{"other"}},
		{"an observation with no patient is nobody's", `{"resourceType":"Observation","id":"o","status":"final","code":{}}`, 404, []string{}, []string{}},
		{"an outside type naming another patient is withheld", `{"resourceType":"Task","id":"t","for":{"reference":"Patient/` + other + `"}}`, 404, []string{}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			got, err := newEnforcingCore().EnforceResponse(context.Background(), decisionFor(me), 200, fhirJSON, body)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d", got.Status, tc.wantStatus)
			}
			switch tc.wantStatus {
			case 404:
				if !bytes.Equal(got.Body, outcome.NotFound.Body()) {
					t.Fatalf("404 body %s differs from the request side's", got.Body)
				}
			default:
				if &got.Body[0] != &body[0] {
					t.Error("an unchanged body was re-encoded")
				}
			}
			if !reflect.DeepEqual(got.Patients, tc.patients) || !reflect.DeepEqual(got.Categories, tc.categories) {
				t.Errorf("patients %q categories %q, want %q %q", got.Patients, got.Categories, tc.patients, tc.categories)
			}
		})
	}
}

func TestEnforceBundle(t *testing.T) {
	searchLinks := []string{"self http://127.0.0.1:8090/fhir/ExplanationOfBenefit?patient=" + me + "&_include=*"}
	for _, tc := range []struct {
		name      string
		body      string
		want      []string
		removed   int
		wantTotal int // -1: none; else the count of visible matches, since the page holds the whole result
	}{
		{"own searchset is unchanged with its total",
			bundle("searchset", 2, nil, entry{eob("e1", me), "match"}, entry{eob("e2", me), "match"}),
			[]string{"Bundle/b1", "ExplanationOfBenefit/e1", "ExplanationOfBenefit/e2"}, 0, 2},
		{"_include results of another patient are dropped and the practitioner kept",
			bundle("searchset", 1, searchLinks, entry{eob("e1", me), "match"}, entry{patientRes(other), "include"}, entry{practitioner, "include"}),
			[]string{"Bundle/b1", "ExplanationOfBenefit/e1", "Practitioner/pr1"}, 1, 1},
		{"_revinclude of another patient's resources is dropped",
			bundle("searchset", 1, nil, entry{practitioner, "match"}, entry{eob("e9", other), "include"}, entry{labObs("o1", me), "include"}),
			[]string{"Bundle/b1", "Practitioner/pr1", "Observation/o1"}, 1, 1},
		{"a history version belonging to another patient is dropped",
			bundle("history", 3, nil, entry{labObs("o1", me), ""}, entry{labObs("o1", other), ""}, entry{labObs("o1", me), ""}),
			[]string{"Bundle/b1", "Observation/o1", "Observation/o1"}, 1, -1},
		{"a batch-response nested searchset is filtered, outcomes kept",
			bundle("batch-response", -1, nil,
				entry{bundle("searchset", 2, nil, entry{eob("e1", me), "match"}, entry{eob("e2", other), "match"}), ""},
				entry{eob("e3", other), ""},
				entry{`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`, ""}),
			[]string{"Bundle/b1", "Bundle/b1", "ExplanationOfBenefit/e1", "OperationOutcome/<nil>"}, 2, -1},
		{"a contained resource of another patient takes its entry out",
			bundle("searchset", 1, nil, entry{strings.Replace(eob("e3", me), `"status"`, `"contained":[{"resourceType":"Coverage","id":"c","beneficiary":{"reference":"Patient/`+other+`"}}],"status"`, 1), "match"}),
			[]string{"Bundle/b1"}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newEnforcingCore().EnforceResponse(context.Background(), decisionFor(me), 200, fhirJSON, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(t, got.Body); !reflect.DeepEqual(g, tc.want) {
				t.Fatalf("returned %q, want %q", g, tc.want)
			}
			if got.Removed != tc.removed {
				t.Errorf("removed %d, want %d", got.Removed, tc.removed)
			}
			var m map[string]any
			_ = json.Unmarshal(got.Body, &m)
			switch total, has := m["total"]; {
			case tc.wantTotal < 0 && has:
				t.Errorf("total %v, want none", total)
			case tc.wantTotal >= 0 && total != float64(tc.wantTotal):
				t.Errorf("total %v, want %d", total, tc.wantTotal)
			}
			for _, p := range got.Patients {
				if p != me {
					t.Errorf("reported patient %q", p)
				}
			}
		})
	}
}

func TestEnforceBundleKeepsNumbersAsWritten(t *testing.T) {
	body := bundle("searchset", 2, nil, entry{labObs("o1", me), "match"}, entry{labObs("o2", other), "match"})
	got, err := newEnforcingCore().EnforceResponse(context.Background(), decisionFor(me), 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got.Body, []byte(`"value":5.70`)) {
		t.Fatalf("decimal precision lost: %s", got.Body)
	}
}

func TestEnforceRewritesAndBindsPagingLinks(t *testing.T) {
	c := newEnforcingCore()
	d := decisionFor(me)
	body := bundle("searchset", 40, []string{
		"self http://127.0.0.1:8090/fhir/ExplanationOfBenefit?patient=" + me,
		"next http://127.0.0.1:8090/fhir?_getpages=5c1f-uuid&_getpagesoffset=20&_count=20&_bundletype=searchset",
	}, entry{eob("e1", me), "match"})
	got, err := c.EnforceResponse(context.Background(), d, 200, fhirJSON, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got.Body, []byte(`"https://api.example/patient-access/fhir?_getpages=5c1f-uuid&_getpagesoffset=20`)) ||
		bytes.Contains(got.Body, []byte("127.0.0.1")) {
		t.Fatalf("links not rewritten: %s", got.Body)
	}
	owner, ok, err := c.PageOwner(context.Background(), "5c1f-uuid")
	if err != nil || !ok || !strings.HasPrefix(owner, "patient-app|"+me+"|") || owner != PageOwner(d) {
		t.Fatalf("page owner %q %v %v", owner, ok, err)
	}
	if _, ok, _ := c.PageOwner(context.Background(), "never-issued"); ok {
		t.Fatal("an unknown page id has an owner")
	}
}

func TestEnforceErrorAnswers(t *testing.T) {
	oo := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"bad date"}]}`
	for _, tc := range []struct {
		name       string
		status     int
		ct, body   string
		wantStatus int
		wantBody   []byte
	}{
		{"an OperationOutcome passes", 400, fhirJSON, oo, 400, []byte(oo)},
		{"HAPI's pretty-printed OperationOutcome passes compact", 400, fhirJSON,
			"{\n  \"resourceType\": \"OperationOutcome\",\n  \"issue\": [ {\n    \"severity\": \"error\",\n    \"code\": \"invalid\",\n    \"diagnostics\": \"bad date\"\n  } ]\n}", 400, []byte(oo)},
		{"an OperationOutcome with resourceType last comes out with it first", 400, fhirJSON,
			`{"issue":[{"severity":"error","code":"invalid","diagnostics":"bad date"}],"resourceType":"OperationOutcome"}`, 400,
			[]byte(`{"resourceType":"OperationOutcome","issue":[{"code":"invalid","diagnostics":"bad date","severity":"error"}]}`)},
		{"an empty error passes", 500, "", "", 500, []byte{}},
		{"HAPI's 404 becomes fhirwall's 404", 404, fhirJSON, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"HAPI-2001: Resource ExplanationOfBenefit/e2 is not known"}]}`, 404, outcome.NotFound.Body()},
		{"a 410 for a deleted resource is a 404", 410, fhirJSON, oo, 404, outcome.NotFound.Body()},
		{"a resource in an error answer is replaced", 422, fhirJSON, eob("e2", other), 422, nil},
		{"an HTML error page is replaced", 502, "text/html", "<html>Patient/member-02</html>", 502, outcome.Refusal{Status: 502, Code: "exception", Diagnostics: "the request could not be processed"}.Body()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newEnforcingCore().EnforceResponse(context.Background(), decisionFor(me), tc.status, tc.ct, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d", got.Status, tc.wantStatus)
			}
			if tc.wantBody != nil && !bytes.Equal(got.Body, tc.wantBody) {
				t.Fatalf("body %s, want %s", got.Body, tc.wantBody)
			}
			if bytes.Contains(got.Body, []byte(other)) {
				t.Fatalf("another patient's id leaked: %s", got.Body)
			}
		})
	}
}

func TestEnforceFailsClosedOnWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct{ name, ct, body string }{
		{"malformed JSON", fhirJSON, `{"resourceType":"Bundle","entry":[`},
		{"not an object", fhirJSON, `[1,2]`},
		{"no resourceType", fhirJSON, `{"id":"x"}`},
		{"trailing data", fhirJSON, eob("e1", me) + eob("e2", other)},
		{"XML", "application/fhir+xml", `<Patient xmlns="http://hl7.org/fhir"/>`},
		{"entry not an array", fhirJSON, `{"resourceType":"Bundle","entry":{"resource":{}}}`},
		{"entry resource not an object", fhirJSON, `{"resourceType":"Bundle","entry":[{"resource":"Patient/x"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newEnforcingCore().EnforceResponse(context.Background(), decisionFor(me), 200, tc.ct, []byte(tc.body))
			if !errors.Is(err, ErrResponse) {
				t.Fatalf("err %v, want ErrResponse", err)
			}
		})
	}
}

func TestEnforceWithoutCompartmentPassesAndReports(t *testing.T) {
	body := []byte(bundle("searchset", 2, nil, entry{eob("e1", me), "match"}, entry{labObs("o2", other), "match"}))
	got, err := newEnforcingCore().EnforceResponse(context.Background(), decisionFor(""), 200, fhirJSON, body)
	if err != nil {
		t.Fatal(err)
	}
	if &got.Body[0] != &body[0] || got.Removed != 0 {
		t.Fatal("body changed without an obligation")
	}
	if want := []string{me, other}; !reflect.DeepEqual(got.Patients, want) {
		t.Errorf("patients %q, want %q", got.Patients, want)
	}
	if want := []string{"claims", "lab-results"}; !reflect.DeepEqual(got.Categories, want) {
		t.Errorf("categories %q, want %q", got.Categories, want)
	}
}

// assertOnlyPatient re-walks an enforced body: nothing in it may be another patient's.
func assertOnlyPatient(t *testing.T, body []byte, patient string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("enforced body is not JSON: %v", err)
	}
	var check func(map[string]any)
	check = func(r map[string]any) {
		if rt, _ := r["resourceType"].(string); rt == "Bundle" {
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
			return
		}
		if rt, _ := r["resourceType"].(string); rt == "OperationOutcome" {
			return
		}
		ps, _ := fhir.PatientsOf(r)
		for _, p := range ps {
			if p != patient {
				t.Fatalf("%s of patient %q left: %v", r["resourceType"], p, r)
			}
		}
	}
	check(m)
}

// An entry without a resource (a history delete) names a resource id but not whose it is: under an obligation
// it is withheld rather than judged by its URL.
func TestEntriesWithoutResourceDoNotLeaveUnderAnObligation(t *testing.T) {
	body := []byte(`{"resourceType":"Bundle","type":"history","total":2,"entry":[` +
		`{"fullUrl":"http://x/fhir/Observation/o-2","request":{"method":"DELETE","url":"Observation/o-2"},"response":{"status":"204"}},` +
		`{"fullUrl":"http://x/fhir/Observation/o-1","resource":{"resourceType":"Observation","id":"o-1","subject":{"reference":"Patient/member-01"}},"request":{"method":"PUT","url":"Observation/o-1"}}]}`)
	c := &Core{}
	d := &Decision{Allow: true}
	d.Policy.Obligations.ResourceTypes = map[string]policy.Constraints{"*": {}}
	d.Policy.Obligations.Compartment = &policy.Compartment{Patient: "member-01"}
	out, err := c.EnforceResponse(context.Background(), d, 200, "application/fhir+json", body)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.Body, []byte("o-2")) || !bytes.Contains(out.Body, []byte(`"o-1"`)) {
		t.Fatalf("got %s", out.Body)
	}
}
