package decision

import (
	"context"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/policy"
)

// fakeReloadingPolicy allows everything under the revision it holds; a test changes rev to play a reload.
type fakeReloadingPolicy struct {
	rev     string
	tellRev bool // whether its results name the revision, as the OPA engine's do
}

func (f *fakeReloadingPolicy) Decide(context.Context, any) (policy.Result, error) {
	r := policy.Result{Allow: true, Status: 200, Reasons: []string{"fake_allow"}}
	if f.tellRev {
		r.Revision = f.rev
	}
	return r, nil
}
func (f *fakeReloadingPolicy) Revision() string { return f.rev }

// fakeKeepingSink keeps every record written.
type fakeKeepingSink struct{ records []audit.Record }

func (f *fakeKeepingSink) Write(_ context.Context, r audit.Record) error {
	f.records = append(f.records, r)
	return nil
}

func TestAuditRecordNamesThePolicyRevisionThatDecidedNotTheOneInForceAtWriteTime(t *testing.T) {
	for _, tellRev := range []bool{true, false} {
		c, _, _ := newRegistryCore(fakeRealmRegistry())
		pol := &fakeReloadingPolicy{rev: "rev-1", tellRev: tellRev}
		sink := &fakeKeepingSink{}
		c.Policy, c.Audit = pol, sink

		allowed := decideWith(c, "patient-access", "patient-app")
		inactive := decideWith(c, "patient-access", "retired") // refused before the policy runs
		early := c.Refuse(Input{Path: "/nowhere"}, outcome.NotFound, "no_api")
		if !allowed.Allow || inactive.Allow {
			t.Fatalf("fake policy: %v, inactive client %v", allowed.Reasons, inactive.Reasons)
		}
		pol.rev = "rev-2" // the policy set is reloaded while the answers are on their way
		for _, d := range []*Decision{allowed, inactive, early} {
			if err := c.Record(context.Background(), d, 200, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		for i, r := range sink.records {
			if r.PolicyRevision != "rev-1" {
				t.Errorf("result names its revision %v: record %d (%v) names %q, want the deciding rev-1", tellRev, i, r.Reasons, r.PolicyRevision)
			}
		}
	}
}
