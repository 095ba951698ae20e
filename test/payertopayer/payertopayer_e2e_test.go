//go:build e2e

package payertopayer_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/membermatch"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

var asyncHeaders = map[string]string{"Prefer": "respond-async"}

// matchExact matches p2p-exact for payer-b with an opt-in naming payer-b, and fails unless the answer is the
// HRex member-match-out with her member id.
func matchExact(t *testing.T, base, token string) answer {
	t.Helper()
	a := send(t, "POST", base+"/Patient/$member-match", token, nil, memberMatchIn(memberParts(t, "p2p-exact", "p2p-coverage-exact", optIn(payerB))))
	if a.status != 200 {
		t.Fatalf("$member-match of p2p-exact: %s", a)
	}
	var out struct {
		ResourceType string
		Parameter    []struct {
			Name            string
			ValueIdentifier struct {
				System, Value string
				Type          struct {
					Coding []struct{ System, Code string }
				}
			}
		}
	}
	if err := json.Unmarshal(a.body, &out); err != nil || out.ResourceType != "Parameters" || len(out.Parameter) != 1 {
		t.Fatalf("$member-match answer is not a one-parameter Parameters: %s", a)
	}
	p := out.Parameter[0]
	var codes []string
	for _, c := range p.ValueIdentifier.Type.Coding {
		codes = append(codes, c.System+"#"+c.Code)
	}
	if p.Name != "MemberIdentifier" || p.ValueIdentifier.System != memberIDSys || p.ValueIdentifier.Value != "P2P-1001" ||
		!slices.Contains(codes, "http://terminology.hl7.org/CodeSystem/v2-0203#MB") ||
		!slices.Contains(codes, "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp#UMB") {
		t.Fatalf("$member-match answer is not p2p-exact's member identifier (MB + UMB, %s|P2P-1001): %s", memberIDSys, a.body)
	}
	checkNothingForbidden(t, "$member-match answer", a.body)
	return a
}

// TestOptedInMemberIsMatchedAndOnlyHerAllowedDataLeaves: payer-b matches p2p-exact with her opt-in; fhirwall
// stores the Consent on the FHIR server, tagged with the client; then every served way of reading her data
// answers, and only with what Payer-to-Payer may share: five years of dates of service, no denied or drug
// prior auths, no cost-sharing or payment, nothing labelled sensitive under a #regular Consent.
func TestOptedInMemberIsMatchedAndOnlyHerAllowedDataLeaves(t *testing.T) {
	evidence.Proves(t, "PDEX-01", "CMS-P2P-01", "CMS-P2P-02", "CMS-P2P-03")
	stackReady(t)
	b, cTok := backend(t, "payer-b"), backend(t, "payer-c")
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			forgetConsents(t)
			match := matchExact(t, m.base, b)
			audit = append(audit, expectation{m.name, match, "matched", "payer-b"})

			stored := storedConsents(t, "p2p-exact")
			if len(stored) != 1 {
				t.Fatalf("HAPI holds %d Consents of p2p-exact tagged %s, want the one just sent", len(stored), consentTag)
			}
			c := mustJSON(stored[0])
			for _, want := range []string{`"code":"payer-b"`, `"reference":"Patient/p2p-exact"`, `"reference":"Organization/payer-b"`, `"status":"active"`} {
				if !bytes.Contains(c, []byte(want)) {
					t.Errorf("stored Consent lacks %s: %s", want, c)
				}
			}
			q := url.Values{"patient": {"Patient/p2p-exact"}, "actor": {payerB}}
			if st, body := hapi(t, "GET", "Consent?"+q.Encode(), nil); st != 200 || len(entries(t, body)) != 1 {
				t.Errorf("HAPI Consent?patient=Patient/p2p-exact&actor=Organization/payer-b: %d, %d entries", st, len(entries(t, body)))
			}

			data := func(path string) answer {
				t.Helper()
				a := send(t, "GET", m.base+path, b, nil, nil)
				audit = append(audit, expectation{m.name, a, "", "payer-b"})
				if a.status != 200 {
					t.Fatalf("opted-in member's data: %s", a)
				}
				checkNothingForbidden(t, path, a.body)
				return a
			}
			for _, c := range []struct {
				path string
				want []string // exactly these ids
			}{
				{"/ExplanationOfBenefit?patient=Patient/p2p-exact&_count=50",
					[]string{"p2p-eob-exact-2022", "p2p-eob-exact-2024", "p2p-pa-exact-approved-2025", "p2p-pa-exact-pended-2026"}},
				{"/Encounter?patient=Patient/p2p-exact", []string{"p2p-encounter-exact-2023"}},
				{"/Condition?patient=Patient/p2p-exact", []string{"p2p-condition-exact-2023"}},
				{"/Observation?patient=Patient/p2p-exact", []string{"p2p-obs-exact-lab-2024"}},
				{"/Coverage?patient=Patient/p2p-exact", []string{"p2p-coverage-exact"}},
				{"/Patient?identifier=" + url.QueryEscape(memberIDSys+"|P2P-1001"), []string{"p2p-exact"}},
				{"/Patient?_id=p2p-exact", []string{"p2p-exact"}},
			} {
				a := data(c.path)
				got := ids(entries(t, a.body))
				if !slices.Equal(got, c.want) {
					t.Errorf("GET %s: ids %v, want exactly %v", c.path, got, c.want)
				}
				for _, r := range entries(t, a.body) {
					for _, p := range patientRefs(r) {
						if p != "p2p-exact" {
							t.Errorf("GET %s: %v/%v names Patient/%s", c.path, r["resourceType"], r["id"], p)
						}
					}
				}
			}
			if a := data("/Patient/p2p-exact"); !bytes.Contains(a.body, []byte(`"id":"p2p-exact"`)) {
				t.Errorf("read Patient/p2p-exact: %s", a)
			}
			// Her claims kept their clinical content; only the amounts went.
			if a := data("/ExplanationOfBenefit/p2p-eob-exact-2024"); !bytes.Contains(a.body, []byte(markerPrefix+"p2p-eob-exact-2024")) {
				t.Errorf("read of her 2024 claim lost its identifier: %s", a)
			}
			// Her opt-in names payer-b: to payer-c she is the 404 of a member that does not exist.
			missingForC := send(t, "GET", m.base+"/Patient/p2p-no-such-member", cTok, nil, nil)
			for _, path := range []string{"/ExplanationOfBenefit?patient=Patient/p2p-exact", "/Patient/p2p-exact", "/ExplanationOfBenefit/p2p-eob-exact-2024"} {
				a := send(t, "GET", m.base+path, cTok, nil, nil)
				audit = append(audit, expectation{m.name, a, "", "payer-c"})
				if a.status != 404 || !bytes.Equal(a.body, missingForC.body) {
					t.Errorf("payer-c, whom she did not name: %s; want the 404 of a missing member", a)
				}
			}
			if a := send(t, "GET", m.base+"/Patient?identifier="+url.QueryEscape(memberIDSys+"|P2P-1001"), cTok, nil, nil); a.status != 404 &&
				(a.status != 200 || len(entries(t, a.body)) != 0) {
				t.Errorf("payer-c searching her member id: %s; want nothing", a)
			}
			// A page of her claims is payer-b's: payer-c following the next link gets the 404 of a missing page.
			first := data("/ExplanationOfBenefit?patient=Patient/p2p-exact&_count=1")
			var links struct {
				Link []struct{ Relation, URL string }
			}
			_ = json.Unmarshal(first.body, &links)
			next := ""
			for _, l := range links.Link {
				if l.Relation == "next" {
					next = l.URL
				}
			}
			if !strings.HasPrefix(next, m.base) {
				t.Errorf("next link %q is not under %s", next, m.base)
			} else {
				if a := send(t, "GET", next, cTok, nil, nil); a.status != 404 {
					t.Errorf("payer-c following payer-b's next link: %s", a)
				}
				if a := send(t, "GET", next, b, nil, nil); a.status != 200 || len(entries(t, a.body)) != 1 {
					t.Errorf("payer-b following its next link: %s", a)
				} else {
					checkNothingForbidden(t, "page 2", a.body)
				}
			}
			// A claim older than five years, a denied and a drug prior auth: the 404 of a claim that does not exist.
			missing := send(t, "GET", m.base+"/ExplanationOfBenefit/p2p-no-such-eob", b, nil, nil)
			for _, id := range []string{"p2p-eob-exact-2019", "p2p-pa-exact-denied-2025", "p2p-pa-exact-drug-2025"} {
				if a := send(t, "GET", m.base+"/ExplanationOfBenefit/"+id, b, nil, nil); a.status != 404 || !bytes.Equal(a.body, missing.body) {
					t.Errorf("read of %s, which never leaves: %s; want the 404 of a missing claim %s", id, a, missing)
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestEveryFailedMatchIsTheSame422: twins (two matches), a Consent naming another payer, a Consent whose
// period ended, a coverage that ended more than five years ago, and somebody who was never a member get one
// answer, byte for byte, so a payer learns nothing about membership from it; only the audit record tells them
// apart. None of them stores a Consent or opens the member's data.
func TestEveryFailedMatchIsTheSame422(t *testing.T) {
	evidence.Proves(t, "PDEX-01")
	stackReady(t)
	b := backend(t, "payer-b")
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			forgetConsents(t)
			cases := []struct {
				name, outcome string
				parts         []any
			}{
				{"twins", "ambiguous", memberParts(t, "p2p-twin-1", "p2p-coverage-twin-1", optIn(payerB))},
				{"consent names payer-c", "consent_refused", memberParts(t, "p2p-notopted", "p2p-coverage-notopted", optIn(payerC))},
				{"consent expired", "consent_refused", memberParts(t, "p2p-expired", "p2p-coverage-expired", expiredOptIn(payerB))},
				{"coverage ended", "no_match", memberParts(t, "p2p-ended", "p2p-coverage-ended", optIn(payerB))},
				{"no such member", "no_match", nobody(optIn(payerB))},
			}
			var first answer
			for i, c := range cases {
				a := send(t, "POST", m.base+"/Patient/$member-match", b, nil, memberMatchIn(c.parts))
				audit = append(audit, expectation{m.name, a, c.outcome, "payer-b"})
				if a.status != 422 || !isOperationOutcome(a.body) {
					t.Errorf("%s: %s, want 422 OperationOutcome", c.name, a)
					continue
				}
				if i == 0 || first.status != 422 {
					first = a
				} else if !bytes.Equal(a.body, first.body) {
					t.Errorf("%s: body %s differs from %s's %s", c.name, a.body, cases[0].name, first.body)
				}
				checkNothingForbidden(t, c.name, a.body)
			}
			// A body that is not a member-match-in is the caller's mistake, not an answer about anybody.
			for name, body := range map[string][]byte{
				"not JSON":            []byte("{"),
				"not Parameters":      mustJSON(map[string]any{"resourceType": "Patient"}),
				"no Consent":          memberMatchIn(memberParts(t, "p2p-exact", "p2p-coverage-exact", optIn(payerB))[:2]),
				"no member id at all": memberMatchIn(memberPartsOf([]any{map[string]any{"family": "Quintero", "given": []any{"Maria"}}}, "1980-03-14", "female", "", optIn(payerB))),
			} {
				if a := send(t, "POST", m.base+"/Patient/$member-match", b, nil, body); a.status != 400 || !isOperationOutcome(a.body) {
					t.Errorf("malformed member-match-in (%s): %s, want 400", name, a)
				}
			}
			for _, p := range fixtureMembers {
				if n := len(storedConsents(t, p)); n != 0 {
					t.Errorf("a failed match stored %d Consents of %s", n, p)
				}
			}
			// Without a stored opt-in, the members' data is the 404 of a member that does not exist.
			missing := send(t, "GET", m.base+"/Patient/p2p-no-such-member", b, nil, nil)
			for _, path := range []string{
				"/ExplanationOfBenefit?patient=Patient/p2p-notopted", "/Patient/p2p-notopted",
				"/ExplanationOfBenefit/p2p-eob-notopted-2024",
				"/ExplanationOfBenefit?patient=Patient/p2p-expired", "/Patient/p2p-twin-1", "/Coverage?patient=Patient/p2p-ended",
				"/Patient?identifier=" + url.QueryEscape(memberIDSys+"|P2P-3003"),
			} {
				a := send(t, "GET", m.base+path, b, nil, nil)
				audit = append(audit, expectation{m.name, a, "", "payer-b"})
				checkNothingForbidden(t, path, a.body)
				if strings.HasPrefix(path, "/Patient?identifier") {
					// A search by identifier is held to opted-in members: an empty Bundle, or the 404.
					if a.status == 200 && len(entries(t, a.body)) == 0 {
						continue
					}
				}
				if a.status != 404 || !bytes.Equal(a.body, missing.body) {
					t.Errorf("not opted in: %s; want the 404 of a missing member %s", a, missing)
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestRevokedConsentStopsTheVeryNextRequest: the stored opt-in is read on every request. Made inactive on the
// FHIR server (as the payer's staff would), the next data request is the 404 of a member that does not
// exist; active again, data flows again.
func TestRevokedConsentStopsTheVeryNextRequest(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-01")
	stackReady(t)
	b := backend(t, "payer-b")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			forgetConsents(t)
			matchExact(t, m.base, b)
			path := m.base + "/ExplanationOfBenefit?patient=Patient/p2p-exact"
			if a := send(t, "GET", path, b, nil, nil); a.status != 200 {
				t.Fatalf("before revocation: %s", a)
			}
			stored := storedConsents(t, "p2p-exact")
			if len(stored) != 1 {
				t.Fatalf("%d stored Consents of p2p-exact, want 1", len(stored))
			}
			c := stored[0]
			setStatus := func(status string) {
				t.Helper()
				c["status"] = status
				if st, body := hapi(t, "PUT", "Consent/"+fmt.Sprint(c["id"]), c); st != 200 {
					t.Fatalf("HAPI PUT Consent/%v status %s: %d %.300s", c["id"], status, st, body)
				}
			}
			setStatus("inactive")
			missing := send(t, "GET", m.base+"/Patient/p2p-no-such-member", b, nil, nil)
			for _, p := range []string{path, m.base + "/Patient/p2p-exact", m.base + "/ExplanationOfBenefit/p2p-eob-exact-2024"} {
				if a := send(t, "GET", p, b, nil, nil); a.status != 404 || !bytes.Equal(a.body, missing.body) {
					t.Errorf("right after revocation: %s; want the 404 of a missing member", a)
				}
			}
			setStatus("active")
			if a := send(t, "GET", path, b, nil, nil); a.status != 200 {
				t.Errorf("opt-in active again: %s", a)
			}
		})
	}
}

// TestBulkMatchAndExportAreTheCallersAlone: PDex $bulk-member-match of p2p-exact (opted in), a twin (no
// unique match) and p2p-notopted (Consent naming payer-c) answers the three Groups; the job, the matched
// Group's $davinci-data-export, its status and its files are payer-b's alone (payer-c gets the 404 of things
// that do not exist), and every exported line is p2p-exact's and within the data scope.
func TestBulkMatchAndExportAreTheCallersAlone(t *testing.T) {
	evidence.Proves(t, "PDEX-02", "CMS-P2P-04")
	stackReady(t)
	b, c := backend(t, "payer-b"), backend(t, "payer-c")
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			forgetConsents(t)
			body := bulkMatchIn(
				memberParts(t, "p2p-exact", "p2p-coverage-exact", optIn(payerB)),
				memberParts(t, "p2p-twin-2", "p2p-coverage-twin-2", optIn(payerB)),
				memberParts(t, "p2p-notopted", "p2p-coverage-notopted", optIn(payerC)),
			)
			if a := send(t, "POST", m.base+"/Group/$bulk-member-match", b, nil, body); a.status != 400 {
				t.Errorf("$bulk-member-match without Prefer: respond-async: %s, want 400", a)
			}
			kick := send(t, "POST", m.base+"/Group/$bulk-member-match", b, asyncHeaders, body)
			audit = append(audit, expectation{m.name, kick, "", "payer-b"})
			loc := kick.header.Get("Content-Location")
			if kick.status != 202 || !strings.HasPrefix(loc, m.base+"/$bulk-member-match-status?_jobId=") {
				t.Fatalf("$bulk-member-match kick-off: %s, Content-Location %q", kick, loc)
			}
			unknown := send(t, "GET", m.base+"/$bulk-member-match-status?_jobId=no-such-job", b, nil, nil)
			if a := send(t, "GET", loc, c, nil, nil); a.status != 404 || !bytes.Equal(a.body, unknown.body) {
				t.Errorf("payer-c polling payer-b's match job: %s; want the unknown job's %s", a, unknown)
			}
			done := poll(t, loc, b, 2*time.Minute)
			audit = append(audit, expectation{m.name, done, "", "payer-b"})
			checkNothingForbidden(t, "bulk match result", done.body)
			groups := resultGroups(t, done.body)
			// The result Groups live on the shared FHIR server: gone when the case ends, so runs do not pile up.
			t.Cleanup(func() {
				for _, g := range groups {
					if st, body := hapi(t, "DELETE", "Group/"+fmt.Sprint(g["id"]), nil); st >= 300 {
						t.Errorf("HAPI DELETE Group/%v: %d %.300s", g["id"], st, body)
					}
				}
			})
			matched := groups["ResourceIdentifier"]
			if matched == nil {
				t.Fatalf("no ResourceIdentifier Group: %s", done.body)
			}
			if got := groupEntities(matched); !slices.Equal(got, []string{"Patient/p2p-exact"}) {
				t.Errorf("matched Group members %v, want [Patient/p2p-exact]", got)
			}
			for name, n := range map[string]int{"NoMatch": 1, "ConsentConstraint": 1} {
				g := groups[name]
				if g == nil {
					t.Errorf("no %s Group: %s", name, done.body)
					continue
				}
				for _, e := range groupEntities(g) {
					if strings.HasPrefix(e, "Patient/") {
						t.Errorf("%s Group names this server's %s", name, e)
					}
				}
				if got := len(groupEntities(g)); got != n {
					t.Errorf("%s Group has %d members, want %d", name, got, n)
				}
			}
			if n := len(storedConsents(t, "p2p-exact")); n != 1 {
				t.Errorf("bulk match stored %d Consents of p2p-exact, want 1", n)
			}
			if n := len(storedConsents(t, "p2p-notopted")); n != 0 {
				t.Errorf("bulk match stored %d Consents of p2p-notopted, whose Consent names payer-c", n)
			}
			groupID := fmt.Sprint(matched["id"])
			if st, _ := hapi(t, "GET", "Group/"+groupID, nil); st != 200 {
				t.Fatalf("matched Group %s is not a Group on HAPI: %d", groupID, st)
			}

			// The export of the matched Group.
			exportURL := m.base + "/Group/" + groupID + "/$davinci-data-export?exportType=" + url.QueryEscape("hl7.fhir.us.davinci-pdex#payertopayer")
			if a := send(t, "GET", exportURL, c, asyncHeaders, nil); a.status != 404 {
				t.Errorf("payer-c exporting payer-b's matched Group: %s, want 404", a)
			}
			ek := send(t, "GET", exportURL, b, asyncHeaders, nil)
			audit = append(audit, expectation{m.name, ek, "", "payer-b"})
			status := ek.header.Get("Content-Location")
			if ek.status != 202 || !strings.HasPrefix(status, m.base+"/$export-poll-status?_jobId=") {
				t.Fatalf("$davinci-data-export kick-off: %s, Content-Location %q", ek, status)
			}
			unknownExport := send(t, "GET", m.base+"/$export-poll-status?_jobId=no-such-job", b, nil, nil)
			if a := send(t, "GET", status, c, nil, nil); a.status != 404 || !bytes.Equal(a.body, unknownExport.body) {
				t.Errorf("payer-c polling payer-b's export: %s; want the unknown job's %s", a, unknownExport)
			}
			manifest := poll(t, status, b, 4*time.Minute)
			var man struct {
				Output, Error []struct{ Type, URL string }
			}
			if err := json.Unmarshal(manifest.body, &man); err != nil || len(man.Output) == 0 {
				t.Fatalf("export manifest: %v %s", err, manifest)
			}
			seen := map[string]bool{}
			for _, f := range man.Output {
				if !strings.HasPrefix(f.URL, m.base+"/Binary/") {
					t.Errorf("file URL %q is not a Binary under %s", f.URL, m.base)
					continue
				}
				ndjson := map[string]string{"Accept": "application/fhir+ndjson"}
				if a := send(t, "GET", f.URL, c, ndjson, nil); a.status != 404 {
					t.Errorf("payer-c downloading payer-b's %s file: %s", f.Type, a)
				}
				a := send(t, "GET", f.URL, b, ndjson, nil)
				audit = append(audit, expectation{m.name, a, "", "payer-b"})
				if a.status != 200 {
					t.Errorf("downloading %s: %s", f.Type, a)
					continue
				}
				checkExportLines(t, f.Type, a.body, seen)
			}
			// Files are held to the members opted in now: once her Consent is revoked, a download carries
			// nothing of hers.
			for _, sc := range storedConsents(t, "p2p-exact") {
				sc["status"] = "inactive"
				if st, body := hapi(t, "PUT", "Consent/"+fmt.Sprint(sc["id"]), sc); st != 200 {
					t.Fatalf("HAPI PUT Consent/%v inactive: %d %.300s", sc["id"], st, body)
				}
			}
			for _, f := range man.Output {
				a := send(t, "GET", f.URL, b, map[string]string{"Accept": "application/fhir+ndjson"}, nil)
				if a.status == 404 {
					continue
				}
				if a.status != 200 {
					t.Errorf("downloading %s after revocation: %s", f.Type, a)
					continue
				}
				if bytes.Contains(a.body, []byte("p2p-exact")) {
					t.Errorf("after her Consent was revoked, the %s file still carries her data: %.300s", f.Type, a.body)
				}
			}
			for _, want := range []string{"Patient/p2p-exact", "ExplanationOfBenefit/p2p-eob-exact-2024", "ExplanationOfBenefit/p2p-pa-exact-approved-2025", "Encounter/p2p-encounter-exact-2023"} {
				if !seen[want] {
					t.Errorf("the export lacks %s, which the member opted in to share (got %v)", want, keys(seen))
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// poll follows a Bulk Data status URL until it stops answering 202.
func poll(t *testing.T, status, token string, limit time.Duration) answer {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		a := send(t, "GET", status, token, nil, nil)
		if a.status != 202 {
			if a.status != 200 {
				t.Fatalf("polling %s: %s", status, a)
			}
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still in progress after %s", status, limit)
		}
		time.Sleep(time.Second)
	}
}

// resultGroups reads a multi-member-match-bundle-out Parameters: parameter name → Group.
func resultGroups(t *testing.T, body []byte) map[string]map[string]any {
	t.Helper()
	var p struct {
		ResourceType string
		Parameter    []struct {
			Name     string
			Resource map[string]any
		}
	}
	if err := json.Unmarshal(body, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("bulk match result is not Parameters: %.500s", body)
	}
	out := map[string]map[string]any{}
	for _, x := range p.Parameter {
		if x.Resource["resourceType"] != "Group" {
			t.Errorf("parameter %s is not a Group", x.Name)
		}
		out[x.Name] = x.Resource
	}
	return out
}

func groupEntities(g map[string]any) []string {
	var out []string
	for _, m := range g["member"].([]any) {
		out = append(out, fmt.Sprint(m.(map[string]any)["entity"].(map[string]any)["reference"]))
	}
	return out
}

// checkExportLines fails on a line that is not p2p-exact's or that carries what never leaves; seen collects
// Type/id of every line.
func checkExportLines(t *testing.T, file string, body []byte, seen map[string]bool) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: a line that is not JSON: %.200s", file, line)
		}
		ref := fmt.Sprintf("%v/%v", r["resourceType"], r["id"])
		seen[ref] = true
		if r["resourceType"] == "Patient" && r["id"] != "p2p-exact" {
			t.Errorf("%s: %s exported", file, ref)
		}
		for _, p := range patientRefs(r) {
			if p != "p2p-exact" {
				t.Errorf("%s: %s names Patient/%s", file, ref, p)
			}
		}
		checkNothingForbidden(t, file+" line "+ref, line)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestMembersAndProvidersAreRefusedEverywhere: a member's app and a provider organisation's backend are not
// payers; every Payer-to-Payer path refuses them with 403, whatever they send.
func TestMembersAndProvidersAreRefusedEverywhere(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-04")
	stackReady(t)
	mt, err := stackauth.Member(ctx(t), "member01", "openid", "launch/patient", "patient/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	provider := backend(t, "provider-org-a")
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			forgetConsents(t)
			// Even while p2p-exact has an opt-in naming payer-b.
			matchExact(t, m.base, backend(t, "payer-b"))
			match := memberMatchIn(memberParts(t, "p2p-exact", "p2p-coverage-exact", optIn(payerB)))
			bulk := bulkMatchIn(memberParts(t, "p2p-exact", "p2p-coverage-exact", optIn(payerB)))
			for who, tok := range map[string]string{"member01": mt.AccessToken, "provider-org-a": provider} {
				for _, r := range []struct {
					method, path string
					body         []byte
				}{
					{"POST", "/Patient/$member-match", match},
					{"POST", "/Group/$bulk-member-match", bulk},
					{"GET", "/$bulk-member-match-status?_jobId=no-such-job", nil},
					{"GET", "/ExplanationOfBenefit?patient=Patient/p2p-exact", nil},
					{"GET", "/Patient/p2p-exact", nil},
					{"GET", "/Patient?identifier=" + url.QueryEscape(memberIDSys+"|P2P-1001"), nil},
					{"GET", "/Group/no-such-group/$davinci-data-export", nil},
				} {
					a := send(t, r.method, m.base+r.path, tok, asyncHeaders, r.body)
					audit = append(audit, expectation{m.name, a, "", ""})
					if a.status != 403 || !isOperationOutcome(a.body) {
						t.Errorf("%s: %s, want 403 OperationOutcome", who, a)
					}
					checkNothingForbidden(t, who+" "+r.path, a.body)
					if bytes.Contains(a.body, []byte("p2p-marker-")) || bytes.Contains(a.body, []byte("P2P-1001")) {
						t.Errorf("%s: the refusal carries member data: %s", who, a)
					}
				}
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}

// TestOptInIsPerPayerAndPerPolicy: the opt-in names one payer and one policy. p2p-notopted, whose Consent
// names payer-c, is matched by payer-c and his claims reach payer-c, while payer-b still gets the 404 of a
// member that does not exist; a #sensitive Consent lets the PHQ-9 labelled PSY leave, which #regular withholds.
func TestOptInIsPerPayerAndPerPolicy(t *testing.T) {
	evidence.Proves(t, "CMS-P2P-01")
	stackReady(t)
	b, c := backend(t, "payer-b"), backend(t, "payer-c")
	var audit []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			forgetConsents(t)
			a := send(t, "POST", m.base+"/Patient/$member-match", c, nil, memberMatchIn(memberParts(t, "p2p-notopted", "p2p-coverage-notopted", optIn(payerC))))
			audit = append(audit, expectation{m.name, a, "matched", "payer-c"})
			if a.status != 200 || !bytes.Contains(a.body, []byte(`"value":"P2P-3003"`)) {
				t.Fatalf("payer-c matching the member who named it: %s", a)
			}
			claims := "/ExplanationOfBenefit?patient=Patient/p2p-notopted"
			if a := send(t, "GET", m.base+claims, c, nil, nil); a.status != 200 || !slices.Equal(ids(entries(t, a.body)), []string{"p2p-eob-notopted-2024"}) {
				t.Errorf("payer-c reading the claims of the member who named it: %s", a)
			}
			missing := send(t, "GET", m.base+"/Patient/p2p-no-such-member", b, nil, nil)
			if a := send(t, "GET", m.base+claims, b, nil, nil); a.status != 404 || !bytes.Equal(a.body, missing.body) {
				t.Errorf("payer-b reading the claims of a member who named payer-c: %s", a)
			}

			sensitive := optIn(payerB)
			sensitive["policy"] = []any{map[string]any{"uri": membermatch.PolicySensitive}}
			a = send(t, "POST", m.base+"/Patient/$member-match", b, nil, memberMatchIn(memberParts(t, "p2p-exact", "p2p-coverage-exact", sensitive)))
			audit = append(audit, expectation{m.name, a, "matched", "payer-b"})
			if a.status != 200 {
				t.Fatalf("matching p2p-exact with a #sensitive Consent: %s", a)
			}
			a = send(t, "GET", m.base+"/Observation?patient=Patient/p2p-exact", b, nil, nil)
			if got := ids(entries(t, a.body)); a.status != 200 || !slices.Equal(got, []string{"p2p-obs-exact-lab-2024", "p2p-obs-exact-psy-2024"}) {
				t.Errorf("her Observations under a #sensitive Consent: %d %v, want the lab and the PHQ-9", a.status, got)
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, audit) })
}
