//go:build e2e

package payertopayer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/membermatch"
	"github.com/fhirwall/fhirwall/test/stackaudit"
)

// --- HRex / PDex request bodies ---------------------------------------------------------------------------

// optIn names recipient from yesterday for a year; expiredOptIn named it for 2024 only.
func optIn(recipient string) map[string]any { return membermatch.OptIn(recipient, policyRegular) }

func expiredOptIn(recipient string) map[string]any {
	return membermatch.Consent(recipient, policyRegular, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
}

// memberParts are the parts describing one member as a new payer knows them: MemberPatient (the fixture
// Patient's demographics and member id, nothing of this server's: no id, meta, marker), CoverageToMatch
// (the old coverage's subscriber id), and the Consent.
func memberParts(t *testing.T, patientID, coverageID string, c map[string]any) []any {
	t.Helper()
	p, ok := fixtures["Patient/"+patientID]
	if !ok {
		t.Fatalf("no Patient/%s in members.json", patientID)
	}
	cov, ok := fixtures["Coverage/"+coverageID]
	if !ok {
		t.Fatalf("no Coverage/%s in members.json", coverageID)
	}
	return memberPartsOf(p["name"], fmt.Sprint(p["birthDate"]), fmt.Sprint(p["gender"]), fmt.Sprint(cov["subscriberId"]), c)
}

func memberPartsOf(name any, birthDate, gender, memberID string, c map[string]any) []any {
	return membermatch.Member{Name: name, BirthDate: birthDate, Gender: gender, IDSystem: memberIDSys, MemberID: memberID}.Parts(c)
}

// memberMatchIn is an HRex member-match-in Parameters.
func memberMatchIn(parts []any) []byte { return membermatch.In(parts) }

// bulkMatchIn is a PDex multi-member-match-bundle-in Parameters: one MemberBundle per member.
func bulkMatchIn(members ...[]any) []byte { return membermatch.Bulk(members...) }

// nobody is a member this payer never had.
func nobody(c map[string]any) []any {
	return memberPartsOf([]any{map[string]any{"family": "Nobody", "given": []any{"Nemo"}}}, "1971-01-01", "other", "P2P-9999", c)
}

// --- audit ------------------------------------------------------------------------------------------------

// expectation is an answer the audit trail must hold, with the $member-match outcome when one is wanted.
type expectation struct {
	mode    string
	a       answer
	outcome string
	client  string
}

// checkAudit reads the audit topic from just before the suite started until every expected decision has its
// record: api payer-to-payer, the status the client got, the client, and the outcome where one is expected.
func checkAudit(t *testing.T, want []expectation) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stackaudit.Expect(c, t, testStart.Add(-10*time.Second), api, auditExpectations(want))
}

func auditExpectations(want []expectation) []stackaudit.Expectation {
	out := make([]stackaudit.Expectation, 0, len(want))
	for _, w := range want {
		out = append(out, stackaudit.Expectation{What: w.mode + " " + w.a.String(), DecisionID: w.a.decisionID,
			Status: w.a.status, Client: w.client, Outcome: w.outcome})
	}
	return out
}
