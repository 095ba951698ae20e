//go:build e2e

package adversarial

// Payer-to-Payer fixtures and principals. test/payertopayer opts its own members (p2p-exact for payer-b,
// p2p-notopted for payer-c) in and out while it runs, and deletes every stored Consent of them: sharing them
// would make both suites flaky. This suite has its own members, cloned from test/payertopayer/testdata/
// members.json under other ids, names and member numbers (testdata/payertopayer.json, ids fwadv-p2p-*, leak
// marker identifiers p2p-marker-fwadv-p2p-*): the same cases (one exact match with data inside and outside
// the data scope, twins, a member nobody opted in). The other suite's members and the seed's are still
// attacked, as members this suite's callers must never see.

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/membermatch"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

//go:embed testdata/payertopayer.json
var payerToPayerJSON []byte

const (
	p2pSelf         = "fwadv-p2p-exact"    // matched and opted in to payer-b (#regular) by each test that needs it
	p2pNotOpted     = "fwadv-p2p-notopted" // a unique member nobody opted in
	p2pTwin         = "fwadv-p2p-twin-1"   // one of two identical members: never a match
	p2pSelfMemberID = "FWADV-7001"
	p2pNotOptedID   = "FWADV-7003"
	p2pTwinID       = "FWADV-7002"
	p2pMemberIDSys  = "https://payer-a.example.org/member-id"
	// p2pConsentTag marks the Consents fhirwall stored after a match (adapters/payerexchange TagSystem).
	p2pConsentTag = "https://fhirwall.dev/CodeSystem/payer-to-payer-consent-from"
	hrexRegular   = membermatch.PolicyRegular
)

// p2pMembers are this suite's Payer-to-Payer members: the Consents stored for them are this suite's alone.
var p2pMembers = []string{p2pSelf, "fwadv-p2p-twin-1", "fwadv-p2p-twin-2", p2pNotOpted}

// payerWithheld are the resources of the opted-in member that never leave through Payer-to-Payer (CMS-0057-F,
// FHIR-NOTES "what each API may return"), each with the reason TestPayerToPayerForbiddenDataIsReallyInHAPI
// checks against HAPI's raw data.
var payerWithheld = map[string]string{
	"ExplanationOfBenefit/fwadv-p2p-eob-exact-2019":       "old",
	"Encounter/fwadv-p2p-encounter-exact-2018":            "old",
	"Condition/fwadv-p2p-condition-exact-2017":            "old",
	"ExplanationOfBenefit/fwadv-p2p-pa-exact-denied-2025": "denied",
	"ExplanationOfBenefit/fwadv-p2p-pa-exact-drug-2025":   "drug",
	"Observation/fwadv-p2p-obs-exact-psy-2024":            "sensitive",
}

func backendFetch(client, scope string) func(ctx context.Context) (*smartclient.Token, error) {
	return func(ctx context.Context) (*smartclient.Token, error) { return stackauth.Backend(ctx, client, scope) }
}

var (
	// payerB: the new payer fwadv-p2p-exact opted in to with a #regular Consent (optInPayerB).
	payerB = &principal{name: "payer-b (system/*.rs; fwadv-p2p-exact opted in, #regular)", api: payerToPayer, payer: true,
		fetch:    backendFetch("payer-b", "system/*.rs"),
		patients: func(*truth) []string { return []string{p2pSelf} },
		shared:   []string{"p2p-exact"},
	}
	// payerBClaimsOnly: the same client with system/ExplanationOfBenefit.rs only.
	payerBClaimsOnly = &principal{name: "payer-b (system/ExplanationOfBenefit.rs only)", api: payerToPayer, payer: true,
		types:    []string{"ExplanationOfBenefit"},
		fetch:    backendFetch("payer-b", "system/ExplanationOfBenefit.rs"),
		patients: func(*truth) []string { return []string{p2pSelf} },
		shared:   []string{"p2p-exact"},
	}
	// payerC: a registered new payer nobody opted in to.
	payerC = &principal{name: "payer-c (system/*.rs; nobody opted in)", api: payerToPayer, payer: true, nobody: true,
		fetch:    backendFetch("payer-c", "system/*.rs"),
		patients: func(*truth) []string { return nil },
		shared:   []string{"p2p-notopted"},
	}
)

// writePayerToPayerFixtures loads test/payertopayer's fixtures (test/payertopayer/testdata/members.json: the
// new payers' Organizations, which the Consents fhirwall stores reference, and the p2p- members the checks
// hold as strangers), then PUTs testdata/payertopayer.json into HAPI. Every entry is a PUT by id: a rerun, or
// the other suite loading the same file, changes nothing.
func writePayerToPayerFixtures(ctx context.Context) error {
	var f struct {
		Resources []map[string]any `json:"resources"`
	}
	if err := json.Unmarshal(payerToPayerJSON, &f); err != nil {
		return fmt.Errorf("testdata/payertopayer.json: %w", err)
	}
	members, err := os.ReadFile(filepath.Join(stackenv.Root(), "test", "payertopayer", "testdata", "members.json"))
	if err != nil {
		return err
	}
	if st, body, err := hapiDo(ctx, http.MethodPost, "", members); err != nil || st != http.StatusOK {
		return fmt.Errorf("HAPI transaction test/payertopayer/testdata/members.json: %d %.300s %v", st, body, err)
	}
	for _, r := range f.Resources {
		if err := hapiPut(ctx, fmt.Sprintf("%v/%v", r["resourceType"], r["id"]), r); err != nil {
			return err
		}
	}
	return nil
}

// hapiDo sends one request to HAPI itself (setup and ground truth only).
func hapiDo(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, stackenv.HAPIURL+"/"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Cache-Control", "no-cache")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("HAPI %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// storedP2PConsents are the Consents HAPI holds for this suite's members (whoever stored them).
func storedP2PConsents(t *testing.T) []map[string]any {
	t.Helper()
	var refs []string
	for _, m := range p2pMembers {
		refs = append(refs, "Patient/"+m)
	}
	q := url.Values{"patient": {joinComma(refs)}, "_count": {"500"}}
	st, b, err := hapiDo(testContext(t), http.MethodGet, "Consent?"+q.Encode(), nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("HAPI Consent search: %d %v %.300s", st, err, b)
	}
	var bu struct {
		Entry []struct{ Resource map[string]any } `json:"entry"`
	}
	_ = json.Unmarshal(b, &bu)
	var out []map[string]any
	for _, e := range bu.Entry {
		out = append(out, e.Resource)
	}
	return out
}

// forgetP2PConsents deletes every Consent of this suite's members (a previous run's too).
func forgetP2PConsents(t *testing.T) {
	t.Helper()
	for _, c := range storedP2PConsents(t) {
		if st, b, err := hapiDo(context.Background(), http.MethodDelete, "Consent/"+fmt.Sprint(c["id"]), nil); err != nil || st >= 300 {
			t.Errorf("HAPI DELETE Consent/%v: %d %v %.300s", c["id"], st, err, b)
		}
	}
}

// optInPayerB: fwadv-p2p-exact opts in to payer-b with a #regular Consent through $member-match (standalone:
// the stored Consent serves both modes), for the rest of t; nothing else of this suite's members is opted in.
func optInPayerB(t *testing.T) {
	t.Helper()
	forgetP2PConsents(t)
	t.Cleanup(func() { forgetP2PConsents(t) })
	payerB.prepare(t, groundTruth(t))
	a, err := send(testContext(t), modes()[1], payerToPayer, payerB.token(t), memberMatchCall(p2pMatchIn(p2pSelfParts(p2pConsent("Organization/payer-b", hrexRegular)))))
	if err != nil || a.status != http.StatusOK || !bytes.Contains(a.body, []byte(p2pSelfMemberID)) {
		t.Fatalf("payer-b $member-match of %s: %v %s", p2pSelf, err, a)
	}
	stored := storedP2PConsents(t)
	if len(stored) != 1 || refOf(stored[0]["patient"]) != "Patient/"+p2pSelf || !bytes.Contains(mustMarshal(stored[0]), []byte(`"Organization/payer-b"`)) {
		t.Fatalf("after the match HAPI holds %d Consents of this suite's members, want 1 of %s naming payer-b: %.600s", len(stored), p2pSelf, mustMarshal(stored))
	}
}

// --- HRex 1.0.0 member-match bodies (the builder of test/payertopayer/match_test.go) ---------------------

func coding(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

// p2pConsent is a PDex consent naming recipient (IRCP) from yesterday for a year under policy.
func p2pConsent(recipient, policy string) map[string]any { return membermatch.OptIn(recipient, policy) }

func p2pConsentFor(recipient, policy string, start, end time.Time) map[string]any {
	return membermatch.Consent(recipient, policy, start, end)
}

// p2pParts are MemberPatient, CoverageToMatch and Consent for a member as a new payer knows them.
func p2pParts(family, given, birthDate, gender, memberID string, consent map[string]any) []any {
	return membermatch.Member{Name: membermatch.Name(family, given), BirthDate: birthDate, Gender: gender,
		IDSystem: p2pMemberIDSys, MemberID: memberID}.Parts(consent)
}

func p2pSelfParts(consent map[string]any) []any {
	return p2pParts("Thornbury", "Odalys", "1980-03-14", "female", p2pSelfMemberID, consent)
}

func p2pNotOptedParts(consent map[string]any) []any {
	return p2pParts("Kessington", "Bram", "1975-11-02", "male", p2pNotOptedID, consent)
}

func p2pTwinParts(consent map[string]any) []any {
	return p2pParts("Ruelas", "Tomasz", "1990-07-01", "male", p2pTwinID, consent)
}

// p2pNobodyParts: a member this payer never had.
func p2pNobodyParts(consent map[string]any) []any {
	return p2pParts("Nobody", "Nemo", "1971-01-01", "other", "FWADV-9999", consent)
}

func p2pMatchIn(parts []any) string { return string(membermatch.In(parts)) }

func memberMatchCall(body string) call {
	return call{method: http.MethodPost, path: "/Patient/$member-match", body: body,
		header: map[string]string{"Content-Type": "application/fhir+json"}}
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func joinComma(xs []string) string {
	var b bytes.Buffer
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}
