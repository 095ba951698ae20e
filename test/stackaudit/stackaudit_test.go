package stackaudit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fakeT records what expect reports.
type fakeT struct {
	testing.TB
	errors []string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

// fakeTopic hands its records to visit in order until visit is satisfied.
func fakeTopic(recs ...map[string]any) func(func(map[string]any) bool) (bool, error) {
	return func(visit func(map[string]any) bool) (bool, error) {
		for _, r := range recs {
			if visit(r) {
				return true, nil
			}
		}
		return false, nil
	}
}

func TestExpectFailsOnEveryFieldThatDiffersAndOnMissingRecords(t *testing.T) {
	want := []Expectation{
		{What: "envoy POST a", DecisionID: "d1", Status: 200, Client: "payer-b", Outcome: "matched"},
		{What: "envoy POST b", DecisionID: "d2", Status: 404},
		{What: "envoy POST c", DecisionID: "d3", Status: 200},
		{What: "envoy POST d", Status: 200},
	}
	ft := &fakeT{}
	expect(ft, fakeTopic(
		map[string]any{"decision_id": "other", "api": "x"},
		map[string]any{"decision_id": "d1", "api": "payer-to-payer", "status": 200.0, "client_id": "payer-c", "outcome": "no_match"},
		map[string]any{"decision_id": "d2", "api": "patient-access", "status": 403.0},
	), "payer-to-payer", want)
	for _, w := range []string{
		"envoy POST a: record client_id payer-c, want payer-b",
		"envoy POST a: record outcome no_match, want matched",
		"envoy POST b: record api patient-access",
		"envoy POST b: record status 403, the client got 404",
		"envoy POST c: no audit record with decision_id d3 in Kafka",
		"envoy POST d: no X-Fhirwall-Decision-Id header",
	} {
		if !slices.ContainsFunc(ft.errors, func(e string) bool { return strings.HasPrefix(e, w) }) {
			t.Errorf("no failure %q among %q", w, ft.errors)
		}
	}
	if len(ft.errors) != 6 {
		t.Errorf("%d failures, want 6: %q", len(ft.errors), ft.errors)
	}
}

func TestExpectPassesWhenEveryRecordMatches(t *testing.T) {
	ft := &fakeT{}
	expect(ft, fakeTopic(
		map[string]any{"decision_id": "d1", "api": "prior-auth", "status": 200.0, "client_id": "provider-org-a", "outcome": "approved"},
		map[string]any{"decision_id": "d2", "api": "prior-auth", "status": 401.0, "client_id": "someone"},
	), "prior-auth", []Expectation{
		{What: "a", DecisionID: "d1", Status: 200, Client: "provider-org-a", Outcome: "approved"},
		{What: "b", DecisionID: "d2", Status: 401},
	})
	if len(ft.errors) != 0 {
		t.Errorf("failures %q, want none", ft.errors)
	}
}

func TestExpectReadsNothingWithoutDecisionIDs(t *testing.T) {
	expect(&fakeT{}, func(func(map[string]any) bool) (bool, error) {
		t.Fatal("read the topic with nothing to look for")
		return false, nil
	}, "prior-auth", nil)
}
