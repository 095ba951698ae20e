//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackaudit"
)

// TestPatientAccessMetricsCountTheMembersWhoseDataWentToAnApp computes CMS's Patient Access metrics (unique
// members whose data went to an app, and those whose data went more than once) with the report's own code over
// the audit records the stack wrote for this test's requests: member-01's claims twice (once per face) and a
// refused read of member-02, who must not be counted.
func TestPatientAccessMetricsCountTheMembersWhoseDataWentToAnApp(t *testing.T) {
	evidence.Proves(t, "CMS-PA-07")
	since := time.Now().Add(-time.Second)
	tok := member01Token(t)
	want := map[string]bool{}
	for _, m := range modes {
		for path, status := range map[string]int{"/ExplanationOfBenefit": 200, "/Patient/member-02": 404} {
			r := send(t, "GET", m.base+path, tok, nil, "")
			if r.status != status || r.decisionID == "" {
				t.Fatalf("%s %s: %d (decision %q), want %d", m.name, path, r.status, r.decisionID, status)
			}
			want[r.decisionID] = true
		}
	}
	acc, err := audit.NewCMSReport(audit.CMSOptions{Year: time.Now().UTC().Year(), RepeatUnit: audit.RepeatRequest})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done, err := stackaudit.Scan(c, since, func(rec map[string]any) bool {
		id := fmt.Sprint(rec["decision_id"])
		if !want[id] {
			return false
		}
		delete(want, id)
		raw, _ := json.Marshal(rec)
		var r audit.Record
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Errorf("record %s does not decode as audit.Record: %v", id, err)
		} else if r.Kind == audit.KindAccess {
			acc.Add(r)
		}
		return len(want) == 0
	})
	if err != nil || !done {
		t.Fatalf("%d audit records never arrived (%v)", len(want), err)
	}
	if got := acc.Result(); got.UniquePatients != 1 || got.RepeatPatients != 1 || got.Transfers != 2 {
		t.Fatalf("report %+v; want 1 unique member (member-01), 1 whose data went more than once, 2 transfers", got)
	}
}
