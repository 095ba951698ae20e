package decision

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// fakeOptIns is a fake opt-in source for unit tests: the opted-in patients, and the questions it was asked.
type fakeOptIns struct {
	in    map[string]OptIn
	err   error
	asked [][]string
}

func (f *fakeOptIns) OptedIn(_ context.Context, _ string, patients []string, _ time.Time) (map[string]OptIn, error) {
	f.asked = append(f.asked, slices.Sorted(slices.Values(patients)))
	out := map[string]OptIn{}
	for _, p := range patients {
		if o, ok := f.in[p]; ok {
			out[p] = o
		}
	}
	return out, f.err
}

func payerDecision(t *testing.T, c *Core, method, path, query string) *Decision {
	t.Helper()
	req, err := fhir.Classify(method, path, query, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &Decision{Allow: true, Request: req, Time: time.Now(), Input: Input{API: PayerToPayer, Method: method, Path: path, RawQuery: query},
		Identity: &token.Identity{ClientID: "payer-b", Org: "Organization/payer-b"}}
	facts, m, err := c.payerFacts(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	d.members = m
	d.Policy = policy.Result{Allow: true, Obligations: policy.Obligations{Compartment: &policy.Compartment{Payer: facts["payer"].(string)},
		DataScope: "", ResourceTypes: map[string]policy.Constraints{"*": {}}}}
	return d
}

func TestPayerFactsAskAboutTheNamedMembersOnly(t *testing.T) {
	src := &fakeOptIns{in: map[string]OptIn{"p1": {}}}
	c := &Core{OptIns: src, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d := payerDecision(t, c, "GET", "/ExplanationOfBenefit", "patient=Patient/p1,p2")
	if !slices.Equal(src.asked[0], []string{"p1", "p2"}) || !d.members.permits("p1") || d.members.permits("p2") {
		t.Fatalf("asked %v, members %+v", src.asked, d.members)
	}
}

func TestAnswersNamingNobodyAreHeldToTheOptInsOfThePatientsInThem(t *testing.T) {
	src := &fakeOptIns{in: map[string]OptIn{"p1": {Sensitive: true}}}
	c := &Core{OptIns: src, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	d := payerDecision(t, c, "GET", "/Patient", "identifier=sys|v")
	if len(src.asked) != 0 || !d.members.pending {
		t.Fatalf("a search naming nobody read opt-ins at decision time: %v", src.asked)
	}
	body := `{"resourceType":"Bundle","type":"searchset","entry":[` +
		`{"resource":{"resourceType":"Patient","id":"p1"}},{"resource":{"resourceType":"Patient","id":"p2"}},` +
		`{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"http://h/fhir/Patient/p3"}}}]}`
	e, err := c.EnforceResponse(context.Background(), d, 200, "application/fhir+json", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src.asked[0], []string{"p1", "p2", "p3"}) {
		t.Fatalf("asked about %v", src.asked)
	}
	if s := string(e.Body); !strings.Contains(s, `"p1"`) || strings.Contains(s, `"p2"`) || strings.Contains(s, "p3") {
		t.Fatalf("answer %s", s)
	}
}

func TestOptInsThatCannotBeReadStopTheAnswer(t *testing.T) {
	src := &fakeOptIns{err: errors.New("fhir server down")}
	c := &Core{OptIns: src, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	d := payerDecision(t, c, "GET", "/Patient", "identifier=sys|v")
	e, err := c.EnforceResponse(context.Background(), d, 200, "application/fhir+json", []byte(`{"resourceType":"Patient","id":"p1"}`))
	if err != nil || e.Status != 503 || strings.Contains(string(e.Body), "p1") {
		t.Fatalf("%d %s %v", e.Status, e.Body, err)
	}
}

func TestRegularOptInWithholdsSensitiveResources(t *testing.T) {
	src := &fakeOptIns{in: map[string]OptIn{"p1": {}}}
	c := &Core{OptIns: src, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	d := payerDecision(t, c, "GET", "/Observation", "patient=p1")
	body := `{"resourceType":"Bundle","type":"searchset","entry":[` +
		`{"resource":{"resourceType":"Observation","id":"plain","subject":{"reference":"Patient/p1"}}},` +
		`{"resource":{"resourceType":"Observation","id":"psy","subject":{"reference":"Patient/p1"},"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}}}]}`
	e, err := c.EnforceResponse(context.Background(), d, 200, "application/fhir+json", []byte(body))
	if err != nil || !strings.Contains(string(e.Body), "plain") || strings.Contains(string(e.Body), "psy") {
		t.Fatalf("%s %v", e.Body, err)
	}
}
