package payerexchange

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

const base = "https://gw.example/payer-to-payer/fhir"

func fixtureMember(id, family, given, birth, gender, number, coverageEnd string) []map[string]any {
	p := map[string]any{"resourceType": "Patient", "id": id, "birthDate": birth, "gender": gender,
		"name":       []any{map[string]any{"family": family, "given": []any{given}}},
		"identifier": []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"code": "MB"}}}, "system": "https://payer-a.example.org/member-id", "value": number}}}
	c := map[string]any{"resourceType": "Coverage", "id": "cov-" + id, "status": "active",
		"beneficiary": map[string]any{"reference": "Patient/" + id},
		"identifier":  []any{map[string]any{"system": "https://payer-a.example.org/member-id", "value": number}},
		"period":      map[string]any{"start": "2019-01-01", "end": coverageEnd}}
	return []map[string]any{p, c}
}

func fixtures() []map[string]any {
	var all []map[string]any
	all = append(all, fixtureMember("exact", "Quintero", "Maria", "1980-03-14", "female", "P2P-1001", "2026-06-30")...)
	all = append(all, fixtureMember("twin-1", "Rivera", "Alex", "1990-07-01", "male", "P2P-2002", "")...)
	all = append(all, fixtureMember("twin-2", "Rivera", "Alex", "1990-07-01", "male", "P2P-2002", "")...)
	all = append(all, fixtureMember("ended", "Hale", "Victor", "1955-01-09", "male", "P2P-5005", "2019-12-31")...)
	all = append(all, map[string]any{"resourceType": "Organization", "id": "payer-b",
		"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "0123456789"}}})
	return all
}

// consent is a PDex consent naming recipient (a reference object) for the period.
func consent(recipient map[string]any, start, end, policy string) map[string]any {
	return map[string]any{"resourceType": "Consent", "status": "active",
		"scope":           map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
		"patient":         map[string]any{"reference": "Patient/1"},
		"performer":       []any{map[string]any{"reference": "Patient/1"}},
		"sourceReference": map[string]any{"reference": "http://example.org/DocumentReference/consent.pdf"},
		"policy":          []any{map[string]any{"uri": policy}},
		"provision": map[string]any{"type": "permit", "period": map[string]any{"start": start, "end": end},
			"actor": []any{
				map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "performer"}}},
					"reference": map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9876543210"}, "display": "Old plan"}},
				map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": systemParticipation, "code": "IRCP"}}}, "reference": recipient},
			},
			"action": []any{map[string]any{"coding": []any{map[string]any{"system": systemConsentAction, "code": "disclose"}}}}}}
}

var toPayerB = map[string]any{"reference": "Organization/payer-b"}

func validConsent() map[string]any {
	return consent(toPayerB, "2026-01-01", "2027-12-31", policyRegular)
}

func parts(family, given, birth, gender, number string, c map[string]any) []any {
	return []any{
		map[string]any{"name": "MemberPatient", "resource": map[string]any{"resourceType": "Patient", "id": "1", "birthDate": birth, "gender": gender,
			"name": []any{map[string]any{"family": family, "given": []any{given}}}}},
		map[string]any{"name": "CoverageToMatch", "resource": map[string]any{"resourceType": "Coverage", "subscriberId": number,
			"beneficiary": map[string]any{"reference": "Patient/1"}}},
		map[string]any{"name": "Consent", "resource": c},
	}
}

func matchBody(family, given, birth, gender, number string, c map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": parts(family, given, birth, gender, number, c)})
	return b
}

func decided(t testing.TB, method, path, query string, body []byte) *decision.Decision {
	req, err := fhir.Classify(method, path, query, func(name string) []string {
		if name == "Content-Type" {
			return []string{"application/fhir+json"}
		}
		return nil
	}, body)
	if err != nil {
		t.Fatal(err)
	}
	return &decision.Decision{Allow: true, Request: req, Input: decision.Input{API: "payer-to-payer", Method: method, Path: path, RawQuery: query, Body: body},
		Identity: &token.Identity{ClientID: "payer-b", Org: "Organization/payer-b"},
		Policy:   policy.Result{Obligations: policy.Obligations{Adapter: Name, ResourceTypes: map[string]policy.Constraints{"Patient": {}, "ExplanationOfBenefit": {}, "Organization": {}}}}}
}

func serve(t testing.TB, a *Adapter, d *decision.Decision) decision.Answer {
	ans, err := a.Serve(context.Background(), d, base)
	if err != nil {
		t.Fatal(err)
	}
	return ans
}

func TestMemberMatchAnswersTheMembersIdentifierAndStoresTheConsent(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, _ := f.adapter(t, now)
	ans := serve(t, a, decided(t, "POST", "/Patient/$member-match", "", matchBody(" quintero", "MARIA", "1980-03-14", "female", "P2P-1001", validConsent())))
	if ans.Status != 200 || ans.Outcome != "matched" || len(ans.Patients) != 1 || ans.Patients[0] != "exact" {
		t.Fatalf("answer %d %s %v: %s", ans.Status, ans.Outcome, ans.Patients, ans.Body)
	}
	var out map[string]any
	_ = json.Unmarshal(ans.Body, &out)
	id := obj(list(out["parameter"])[0])["valueIdentifier"]
	if str(obj(id)["value"]) != "P2P-1001" || !hasCoding(obj(id)["type"], "http://terminology.hl7.org/CodeSystem/v2-0203", "MB") {
		t.Fatalf("MemberIdentifier %v", id)
	}
	stored := f.of("Consent")
	if len(stored) != 1 {
		t.Fatalf("%d consents stored", len(stored))
	}
	c := stored[0]
	if str(obj(c["patient"])["reference"]) != "Patient/exact" || str(obj(list(c["performer"])[0])["reference"]) != "Patient/exact" ||
		obj(c["sourceReference"])["reference"] != nil || !strings.Contains(string(must(json.Marshal(c))), `"code":"payer-b"`) {
		t.Fatalf("stored consent %v", c)
	}
	got, err := a.OptedIn(context.Background(), "Organization/payer-b", []string{"exact", "twin-1"}, now)
	if err != nil || len(got) != 1 || got["exact"].Sensitive {
		t.Fatalf("opted in %v %v", got, err)
	}
}

func must(b []byte, _ error) []byte { return b }

// bytesReplace replaces old, which must be there, in a JSON body.
func bytesReplace(b []byte, old, new string) []byte {
	if !strings.Contains(string(b), old) {
		panic("no " + old + " in " + string(b))
	}
	return []byte(strings.Replace(string(b), old, new, 1))
}

func TestEveryFailedMatchGetsTheSameAnswer(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, _ := f.adapter(t, now)
	byNPI := consent(map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "0123456789"}}, "2026-01-01", "2027-01-01", policySensitive)
	if ans := serve(t, a, decided(t, "POST", "/Patient/$member-match", "", matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", byNPI))); ans.Outcome != "matched" {
		t.Fatalf("a recipient named by the payer's NPI: %s %s", ans.Outcome, ans.Body)
	}
	cases := []struct {
		name, want string
		body       []byte
	}{
		{"nobody", "no_match", matchBody("Nobody", "Nemo", "1980-03-14", "female", "P2P-9999", validConsent())},
		{"right id, wrong birth date", "no_match", matchBody("Quintero", "Maria", "1980-03-15", "female", "P2P-1001", validConsent())},
		{"right demographics, wrong id", "no_match", matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-2002", validConsent())},
		{"two members", "ambiguous", matchBody("Rivera", "Alex", "1990-07-01", "male", "P2P-2002", validConsent())},
		{"coverage ended over five years ago", "no_match", matchBody("Hale", "Victor", "1955-01-09", "male", "P2P-5005", validConsent())},
		{"consent ended", "consent_refused", matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", consent(toPayerB, "2024-01-01", "2025-01-01", policyRegular))},
		{"consent names another payer", "consent_refused", matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", consent(map[string]any{"reference": "Organization/payer-c"}, "2026-01-01", "2027-01-01", policyRegular))},
		{"consent without a PDex policy", "consent_refused", matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", consent(toPayerB, "2026-01-01", "2027-01-01", "http://example.org/other"))},
	}
	var first []byte
	for _, c := range cases {
		before := len(f.of("Consent"))
		ans := serve(t, a, decided(t, "POST", "/Patient/$member-match", "", c.body))
		if ans.Status != 422 || ans.Outcome != c.want {
			t.Errorf("%s: %d %s, want 422 %s", c.name, ans.Status, ans.Outcome, c.want)
		}
		if first == nil {
			first = ans.Body
		} else if string(ans.Body) != string(first) {
			t.Errorf("%s: body %s differs from %s", c.name, ans.Body, first)
		}
		if len(f.of("Consent")) != before {
			t.Errorf("%s: a consent was stored", c.name)
		}
	}
}

func TestMalformedMatchRequestsSayWhatIsWrong(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, _ := f.adapter(t, now)
	noID := matchBody("Quintero", "Maria", "1980-03-14", "female", "", validConsent())
	for name, body := range map[string][]byte{
		"not Parameters":  []byte(`{"resourceType":"Patient"}`),
		"no consent":      must(json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": parts("Q", "M", "1980-03-14", "female", "P2P-1001", validConsent())[:2]})),
		"no member id":    noID,
		"no birth date":   matchBody("Quintero", "Maria", "", "female", "P2P-1001", validConsent()),
		"bad birth date":  matchBody("Quintero", "Maria", "14/03/1980", "female", "P2P-1001", validConsent()),
		"id with a comma": matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001,P2P-2002", validConsent()),
		"id with a space": matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P 1001", validConsent()),
		"id too long":     matchBody("Quintero", "Maria", "1980-03-14", "female", strings.Repeat("9", 65), validConsent()),
		"id not ASCII":    matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001é", validConsent()),
		"two consents": must(json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": append(
			parts("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", consent(map[string]any{"reference": "Organization/payer-c"}, "2026-01-01", "2027-01-01", policyRegular)),
			map[string]any{"name": "Consent", "resource": validConsent()})})),
		"patient id too long":   bytesReplace(matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()), `"id":"1"`, `"id":"`+strings.Repeat("1", 65)+`"`),
		"subscriberId an array": bytesReplace(matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()), `"subscriberId":"P2P-1001"`, `"subscriberId":["P2P-1001"]`),
	} {
		ans := serve(t, a, decided(t, "POST", "/Patient/$member-match", "", body))
		if ans.Status != 400 || ans.Outcome != "invalid_request" || !strings.Contains(string(ans.Body), "OperationOutcome") {
			t.Errorf("%s: %d %s %s", name, ans.Status, ans.Outcome, ans.Body)
		}
	}
}

func TestOptInsAreReadAgainOnEveryCall(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, _ := f.adapter(t, now)
	serve(t, a, decided(t, "POST", "/Patient/$member-match", "", matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent())))
	ask := func(payer string, at time.Time, patients ...string) map[string]decision.OptIn {
		got, err := a.OptedIn(context.Background(), payer, patients, at)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := ask("Organization/payer-b", now, "exact", "twin-1"); len(got) != 1 {
		t.Fatalf("opted in: %v", got)
	}
	if got := ask("Organization/payer-c", now, "exact"); len(got) != 0 {
		t.Fatalf("another payer's opt-ins: %v", got)
	}
	if got := ask("Organization/payer-b", now.AddDate(2, 0, 0), "exact"); len(got) != 0 {
		t.Fatalf("after the consent's period: %v", got)
	}
	if got := ask("Organization/payer-b", now, "a,b", "", "x/y"); len(got) != 0 {
		t.Fatalf("ids that are not ids: %v", got)
	}
	searches := f.searches
	f.revoke(f.of("Consent")[0]) // revoked on the FHIR server
	if got := ask("Organization/payer-b", now, "exact"); len(got) != 0 || f.searches != searches+1 {
		t.Fatalf("after revocation: %v, %d searches", got, f.searches-searches)
	}
	many := []string{"exact"}
	for i := range 500 {
		many = append(many, fmt.Sprintf("member-%060d", i))
	}
	f.longest = 0
	ask("Organization/payer-b", now, many...)
	if f.longest > 4096 {
		t.Fatalf("an opt-in search of %d bytes", f.longest)
	}
}

func bulkBody(members ...[]any) []byte {
	var params []any
	for _, m := range members {
		params = append(params, map[string]any{"name": "MemberBundle", "part": m})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	return b
}

func waitDone(t testing.TB, a *Adapter, statusURL string) decision.Answer {
	t.Helper()
	_, query, _ := strings.Cut(statusURL, "?")
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		ans := serve(t, a, decided(t, "GET", "/$bulk-member-match-status", query, nil))
		if ans.Status != http.StatusAccepted {
			return ans
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("bulk match never finished")
	return decision.Answer{}
}

func TestBulkMemberMatchWritesTheThreeGroups(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, jobs := f.adapter(t, now)
	body := bulkBody(
		parts("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()),
		parts("Rivera", "Alex", "1990-07-01", "male", "P2P-2002", validConsent()),
		parts("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", consent(toPayerB, "2020-01-01", "2021-01-01", policyRegular)),
	)
	start := serve(t, a, decided(t, "POST", "/Group/$bulk-member-match", "", body))
	loc := start.Header.Get("Content-Location")
	if start.Status != 202 || !strings.HasPrefix(loc, base+"/$bulk-member-match-status?_jobId=") {
		t.Fatalf("kick-off %d %v", start.Status, start.Header)
	}
	job := loc[strings.Index(loc, "=")+1:]
	if owner, ok, _ := jobs.Owner(context.Background(), decision.ExportRef{Kind: decision.MatchJob, ID: job}); !ok || owner != "payer-b" {
		t.Fatalf("job bound to %q %v", owner, ok)
	}
	done := waitDone(t, a, loc)
	var out map[string]any
	_ = json.Unmarshal(done.Body, &out)
	groups := map[string]map[string]any{}
	for _, p := range list(out["parameter"]) {
		groups[str(obj(p)["name"])] = obj(obj(p)["resource"])
	}
	matched, nomatch, constraint := groups["ResourceIdentifier"], groups["NoMatch"], groups["ConsentConstraint"]
	if done.Status != 200 || matched == nil || nomatch == nil || constraint == nil {
		t.Fatalf("result %d %s", done.Status, done.Body)
	}
	if m := list(matched["member"]); len(m) != 1 || str(obj(obj(m[0])["entity"])["reference"]) != "Patient/exact" {
		t.Fatalf("matched members %v", m)
	}
	for name, g := range map[string]map[string]any{"NoMatch": nomatch, "ConsentConstraint": constraint} {
		b := string(must(json.Marshal(g)))
		if strings.Contains(b, "Patient/exact") || strings.Contains(b, "twin") {
			t.Errorf("%s names this server's patients: %s", name, b)
		}
	}
	if owner, ok, _ := jobs.Owner(context.Background(), decision.ExportRef{Kind: decision.MatchGroup, ID: str(matched["id"])}); !ok || owner != "payer-b" {
		t.Fatalf("matched group bound to %q %v", owner, ok)
	}
	if n := len(f.of("Consent")); n != 1 {
		t.Fatalf("%d consents stored, want the matched member's only", n)
	}
	if !strings.Contains(done.Outcome, "matched=1") || len(done.Patients) != 1 {
		t.Fatalf("audit outcome %q patients %v", done.Outcome, done.Patients)
	}
}

func TestBulkMemberMatchRefusesABadMemberWhole(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, _ := f.adapter(t, now)
	ans := serve(t, a, decided(t, "POST", "/Group/$bulk-member-match", "", bulkBody(
		parts("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()),
		parts("Rivera", "", "1990-07-01", "male", "P2P-2002", validConsent()))))
	if ans.Status != 400 || !strings.Contains(string(ans.Body), "MemberBundle 2") {
		t.Fatalf("%d %s", ans.Status, ans.Body)
	}
	if ans := serve(t, a, decided(t, "GET", "/$bulk-member-match-status", "_jobId=never", nil)); ans.Status != 500 {
		t.Fatalf("a job nobody runs: %d %s", ans.Status, ans.Body)
	}
}

func TestDataExportBindsTheFHIRServersJobToTheCaller(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, jobs := f.adapter(t, now)
	ans := serve(t, a, decided(t, "GET", "/Group/g1/$davinci-data-export", "", nil))
	if ans.Status != 202 || ans.Header.Get("Content-Location") != base+"/$export-poll-status?_jobId=exp-1" {
		t.Fatalf("%d %v %s", ans.Status, ans.Header, ans.Body)
	}
	if owner, ok, _ := jobs.Owner(context.Background(), decision.ExportRef{Kind: decision.ExportJob, ID: "exp-1"}); !ok || owner != "payer-b" {
		t.Fatalf("export job bound to %q %v", owner, ok)
	}
	if got := exportTypes(decided(t, "GET", "/Group/g1/$davinci-data-export", "", nil)); fmt.Sprint(got) != "[ExplanationOfBenefit Patient]" {
		t.Fatalf("default _type %v", got)
	}
}

func FuzzParseSubmission(f *testing.F) {
	f.Add(matchBody("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()))
	f.Add([]byte(`{"resourceType":"Parameters","parameter":[{"name":"MemberPatient","resource":{"resourceType":"Patient","name":[{}]}}]}`))
	f.Add([]byte(`{"resourceType":"Parameters","parameter":[{"name":"Consent","resource":[]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		params, err := parametersOf(body, "")
		if err != nil {
			return
		}
		s, err := parseSubmission(params)
		if err != nil {
			return
		}
		if len(s.ids) == 0 || len(s.ids) > maxIDs || s.consent == nil || s.family == "" || s.birthDate == "" {
			t.Fatalf("accepted a submission the rules refuse: %+v", s)
		}
		_, _ = consentTerms(s.consent, now)
		_ = recipients(s.consent)
		if _, err := consentToStore(s.consent, "p", "Organization/x", "c", true); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLookupSplitsLongIDListsIntoSearchesServersAccept(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, _ := f.adapter(t, now)
	ids := []string{"P2P-1001"}
	for i := range 300 {
		ids = append(ids, fmt.Sprintf("%064d", i))
	}
	c, err := a.lookup(context.Background(), ids, false)
	if err != nil || len(c.coverages) != 1 {
		t.Fatalf("lookup: %v, %d coverages", err, len(c.coverages))
	}
	if f.longest > 4096 {
		t.Fatalf("a search of %d bytes: servers refuse request lines over 8 KiB", f.longest)
	}
}

func TestConcurrentBulkKickOffsShareOneRunner(t *testing.T) {
	f := newFakeFHIR(t, fixtures()...)
	a, _ := f.adapter(t, now)
	body := bulkBody(parts("Quintero", "Maria", "1980-03-14", "female", "P2P-1001", validConsent()))
	done := make(chan decision.Answer, 2)
	for range 2 {
		go func() { done <- serve(t, a, decided(t, "POST", "/Group/$bulk-member-match", "", body)) }()
	}
	for range 2 {
		if ans := <-done; ans.Status != 202 {
			t.Fatalf("kick-off %d %s", ans.Status, ans.Body)
		}
	}
}
