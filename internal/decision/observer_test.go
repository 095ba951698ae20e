package decision

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/policy"
)

// fakeObserver keeps what the core told it.
type fakeObserver struct {
	decided  []time.Duration
	answered []int
	upstream []error
}

func (f *fakeObserver) Decided(_ *Decision, took time.Duration) { f.decided = append(f.decided, took) }
func (f *fakeObserver) Answered(_ *Decision, status int)        { f.answered = append(f.answered, status) }
func (f *fakeObserver) UpstreamFailed(_ *Decision, err error)   { f.upstream = append(f.upstream, err) }

type fakeFailingSink struct{ err error }

func (f fakeFailingSink) Write(context.Context, audit.Record) error { return f.err }

type fakeDownCompartment struct{}

func (fakeDownCompartment) Matches(context.Context, string, string, []policy.Narrow) (bool, error) {
	return false, errors.New("fake fhir server down")
}

type fakeNarrowingPolicy struct{}

func (fakeNarrowingPolicy) Decide(context.Context, any) (policy.Result, error) {
	return policy.Result{Allow: true, Status: 200, Obligations: policy.Obligations{Narrow: []policy.Narrow{{Param: "patient", Value: "member-01"}}}}, nil
}
func (fakeNarrowingPolicy) Revision() string { return "fake-narrowing" }

func TestObserverSeesEveryDecisionTimedAndEveryAnswerAsTheClientGotIt(t *testing.T) {
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	obs := &fakeObserver{}
	c.Observer = obs
	c.Audit = fakeFailingSink{}

	d := decideWith(c, "patient-access", "patient-app")
	if len(obs.decided) != 1 || obs.decided[0] <= 0 {
		t.Fatalf("Decide observed %v, want one positive duration", obs.decided)
	}
	refused := c.Refuse(Input{Path: "/nowhere"}, outcome.NotFound, "no_api")
	if len(obs.decided) != 2 || obs.decided[1] != 0 {
		t.Fatalf("Refuse observed %v, want a second, untimed decision", obs.decided)
	}

	_ = c.Record(context.Background(), d, 403, 0, 0)
	c.Audit = fakeFailingSink{err: errors.New("fake sink down")}
	_ = c.Record(context.Background(), refused, 404, 0, 0)                // the face answers 503 instead
	_ = c.Record(context.Background(), d, UncheckedResponse.Status, 0, 0) // stays 502
	_ = c.Record(context.Background(), d, 0, 0, 0)                        // no answer reached the client
	if want := []int{403, 503, 502, 0}; !slices.Equal(obs.answered, want) {
		t.Fatalf("answered %v, want %v", obs.answered, want)
	}
}

func TestObserverCountsAFailedFHIRServerCallDuringTheDecision(t *testing.T) {
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	obs := &fakeObserver{}
	c.Observer, c.Policy, c.Compartment = obs, fakeNarrowingPolicy{}, fakeDownCompartment{}
	d := decideWith(c, "patient-access", "patient-app")
	if d.Allow || len(obs.upstream) != 1 {
		t.Fatalf("allow=%v upstream failures %v, want a refusal and one failure", d.Allow, obs.upstream)
	}
}

func TestCoreWithoutObserverStillDecides(t *testing.T) {
	c, _, _ := newRegistryCore(fakeRealmRegistry())
	c.Audit = fakeFailingSink{}
	d := decideWith(c, "patient-access", "patient-app")
	if err := c.Record(context.Background(), d, d.Refusal.Status, 0, 0); err != nil {
		t.Fatal(err)
	}
}
