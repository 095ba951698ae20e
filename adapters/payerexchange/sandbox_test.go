package payerexchange

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// syntheticMember is a member as the seed's sandbox data holds it: Patient and Coverage tagged sandbox.
func syntheticMember(id, family, given, birth, gender, number string) []map[string]any {
	m := fixtureMember(id, family, given, birth, gender, number, "")
	for _, r := range m {
		synthetic.Tag(r)
	}
	return m
}

// sandboxFixtures: the real members of fixtures(), a synthetic member, and a synthetic Coverage whose
// beneficiary is the real member "exact" (a mistake in the data the sandbox must not trust).
func sandboxFixtures() []map[string]any {
	all := fixtures()
	all = append(all, syntheticMember("synth", "Sandbox", "Sam", "1985-05-05", "female", "SBX-0001")...)
	stray := fixtureMember("exact", "Quintero", "Maria", "1980-03-14", "female", "SBX-0002", "")[1]
	stray["id"] = "cov-stray"
	synthetic.Tag(stray)
	return append(all, stray)
}

func sandboxDecided(t testing.TB, method, path, query string, body []byte) *decision.Decision {
	d := decided(t, method, path, query, body)
	d.Input.API = "payer-to-payer-sandbox"
	return d
}

func TestSandboxMemberMatchFindsTheSyntheticMemberAndTagsWhatItWritesAndAnswers(t *testing.T) {
	f := newFakeFHIR(t, sandboxFixtures()...)
	a, _ := f.adapter(t, now)
	ans := serve(t, a, sandboxDecided(t, "POST", "/Patient/$member-match", "", matchBody("Sandbox", "Sam", "1985-05-05", "female", "SBX-0001", validConsent())))
	if ans.Status != 200 || len(ans.Patients) != 1 || ans.Patients[0] != "synth" {
		t.Fatalf("answer %d %s %v: %s", ans.Status, ans.Outcome, ans.Patients, ans.Body)
	}
	var out map[string]any
	_ = json.Unmarshal(ans.Body, &out)
	if !datascope.Synthetic(out) {
		t.Fatalf("the answer is not synthetic: %s", ans.Body)
	}
	stored := f.of("Consent")
	if len(stored) != 1 || !datascope.Synthetic(stored[0]) || !strings.Contains(string(must(json.Marshal(stored[0]))), `"code":"payer-b"`) {
		t.Fatalf("stored consents %v", stored)
	}
}

func TestSandboxMemberMatchNeverFindsARealMember(t *testing.T) {
	for name, body := range map[string][]byte{
		"a real member's own data":                      matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()),
		"a synthetic Coverage naming a real member":     matchBody("Quintero", "Maria", "1980-03-14", "female", "SBX-0002", validConsent()),
		"a synthetic member's id, a real member's name": matchBody("Quintero", "Maria", "1980-03-14", "female", "SBX-0001", validConsent()),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeFHIR(t, sandboxFixtures()...)
			a, _ := f.adapter(t, now)
			ans := serve(t, a, sandboxDecided(t, "POST", "/Patient/$member-match", "", body))
			if ans.Status != 422 || len(ans.Patients) != 0 {
				t.Fatalf("answer %d %s %v: %s", ans.Status, ans.Outcome, ans.Patients, ans.Body)
			}
			if n := len(f.of("Consent")); n != 0 {
				t.Fatalf("%d consents stored for a sandbox request that matched nobody", n)
			}
		})
	}
	// The same real member's data on the production API does match: the sandbox, not the data, refused it.
	f := newFakeFHIR(t, sandboxFixtures()...)
	a, _ := f.adapter(t, now)
	if ans := serve(t, a, decided(t, "POST", "/Patient/$member-match", "", matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()))); ans.Status != 200 {
		t.Fatalf("production match %d %s", ans.Status, ans.Body)
	}
}

func TestSandboxBulkMemberMatchWritesAndAnswersSyntheticGroupsOnly(t *testing.T) {
	f := newFakeFHIR(t, sandboxFixtures()...)
	a, _ := f.adapter(t, now)
	body := bulkBody(
		parts("Sandbox", "Sam", "1985-05-05", "female", "SBX-0001", validConsent()),
		parts("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()),
	)
	start := serve(t, a, sandboxDecided(t, "POST", "/Group/$bulk-member-match", "", body))
	if start.Status != 202 {
		t.Fatalf("kick-off %d %s", start.Status, start.Body)
	}
	done := waitDone(t, a, start.Header.Get("Content-Location"))
	var out map[string]any
	_ = json.Unmarshal(done.Body, &out)
	if done.Status != 200 || !datascope.Synthetic(out) {
		t.Fatalf("result %d not synthetic: %s", done.Status, done.Body)
	}
	if len(done.Patients) != 1 || done.Patients[0] != "synth" || strings.Contains(string(done.Body), "Patient/exact") {
		t.Fatalf("matched %v: %s", done.Patients, done.Body)
	}
	for _, r := range append(f.of("Group"), f.of("Consent")...) {
		if !datascope.Synthetic(r) {
			t.Errorf("wrote a %s without the sandbox tag: %v", r["resourceType"], r)
		}
	}
	if n := len(f.of("Group")); n != 2 {
		t.Fatalf("%d Groups written, want matched and not matched", n)
	}
}

func TestSandboxDataExportStartsOnlyForASyntheticGroup(t *testing.T) {
	real := map[string]any{"resourceType": "Group", "id": "real-group", "type": "person", "actual": true}
	synth := map[string]any{"resourceType": "Group", "id": "synth-group", "type": "person", "actual": true}
	synthetic.Tag(synth)
	f := newFakeFHIR(t, real, synth)
	a, _ := f.adapter(t, now)
	if ans := serve(t, a, sandboxDecided(t, "GET", "/Group/real-group/$davinci-data-export", "", nil)); ans.Status != 404 {
		t.Fatalf("a real Group's export on the sandbox: %d %s", ans.Status, ans.Body)
	}
	if ans := serve(t, a, sandboxDecided(t, "GET", "/Group/gone/$davinci-data-export", "", nil)); ans.Status != 404 {
		t.Fatalf("an absent Group's export on the sandbox: %d %s", ans.Status, ans.Body)
	}
	if ans := serve(t, a, sandboxDecided(t, "GET", "/Group/synth-group/$davinci-data-export", "", nil)); ans.Status != http.StatusAccepted {
		t.Fatalf("a synthetic Group's export on the sandbox: %d %s", ans.Status, ans.Body)
	}
}
