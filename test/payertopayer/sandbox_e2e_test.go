//go:build e2e

package payertopayer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/membermatch"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/sandboxapp"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// The Payer-to-Payer sandbox (docs/sandbox.md) needs what the stack's fhirwall only has once the lead
// restarts it from this tree: the payer-to-payer-sandbox API (config/fhirwall.yaml), adapters/payerexchange's
// sandbox rules, the registry's admin API with its Keycloak sync; and the seed's sandbox data (go run
// ./test/seed: sandbox-01, sandbox-payer and the opt-in). Until then each test stops with require.Missing.

const (
	sandboxAPI   = "payer-to-payer-sandbox"
	sandboxPayer = "Organization/sandbox-payer"
	sandboxTag   = "https://fhirwall.dev/CodeSystem/environment|sandbox"
	// seedMemberIDSys names the seed's members (test/seed: the sandbox member's FWSB0001).
	seedMemberIDSys = "https://fhirwall.example/member-id"
)

var sandboxModes = []struct{ name, base, production string }{
	{"envoy", stackenv.EnvoyURL() + "/" + sandboxAPI + "/fhir", stackenv.EnvoyURL() + "/payer-to-payer/fhir"},
	{"standalone", stackenv.StandaloneURL + "/" + sandboxAPI + "/fhir", stackenv.StandaloneURL + "/payer-to-payer/fhir"},
}

// sandboxMember is the seed's synthetic member as a new payer knows them.
var sandboxMember = membermatch.Member{Name: []any{map[string]any{"family": "Sandbox", "given": []any{"Sam"}}},
	BirthDate: "1985-04-12", Gender: "male", IDSystem: seedMemberIDSys, MemberID: "FWSB0001"}

// requireSandboxServed stops t unless both faces serve payer-to-payer-sandbox and HAPI holds the seed's
// sandbox payer.
func requireSandboxServed(t *testing.T) {
	t.Helper()
	stackReady(t)
	for _, m := range sandboxModes {
		if a := send(t, "GET", m.base+"/metadata", "", nil, nil); a.status != http.StatusOK {
			require.Missing(t, fmt.Sprintf("%s does not serve /%s/fhir (%d): restart the stack's fhirwall built from this tree", m.name, sandboxAPI, a.status))
		}
	}
	if st, _ := hapi(t, "GET", "Consent/payer-to-payer-opt-in-sandbox-01", nil); st != http.StatusOK {
		require.Missing(t, "HAPI has no Consent/payer-to-payer-opt-in-sandbox-01: load the seed (go run ./test/seed)")
	}
}

// sandboxPayerToken registers a sandbox payer backend (org sandbox-payer) and gets its token; the Consents
// its matches store are deleted when t ends.
func sandboxPayerToken(t *testing.T) (clientID, token string) {
	t.Helper()
	b := sandboxapp.RegisterBackend(ctx(t), t, httpClient, "h9-p2p-sandbox", []string{"payer-to-payer"}, sandboxPayer, []string{"system/*.rs"})
	t.Cleanup(func() {
		q := url.Values{"_tag": {consentTag + "|" + b.ClientID}, "_count": {"500"}}
		_, body := hapi(t, "GET", "Consent?"+q.Encode(), nil)
		for _, c := range entries(t, body) {
			hapi(t, "DELETE", "Consent/"+fmt.Sprint(c["id"]), nil)
		}
	})
	return b.ClientID, b.Token(ctx(t), t, []string{"system/*.rs"})
}

// synthetic: r and every resource in it carry the sandbox tag (datascope.Synthetic, as the test sees it).
func synthetic(r map[string]any) bool {
	if r["resourceType"] != "Bundle" && r["resourceType"] != "OperationOutcome" {
		meta, _ := r["meta"].(map[string]any)
		tags, _ := meta["tag"].([]any)
		tagged := false
		for _, tg := range tags {
			c, _ := tg.(map[string]any)
			tagged = tagged || fmt.Sprint(c["system"])+"|"+fmt.Sprint(c["code"]) == sandboxTag
		}
		if !tagged {
			return false
		}
	}
	for _, k := range []string{"contained", "entry", "parameter"} {
		l, _ := r[k].([]any)
		for _, e := range l {
			eo, _ := e.(map[string]any)
			if res, ok := eo["resource"].(map[string]any); ok && !synthetic(res) {
				return false
			}
			if k == "contained" && eo != nil && !synthetic(eo) {
				return false
			}
		}
	}
	return true
}

func TestSandboxMemberMatchFindsTheSyntheticMemberAndNeverARealOne(t *testing.T) {
	evidence.Proves(t, "SEC-05")
	requireSandboxServed(t)
	clientID, token := sandboxPayerToken(t)
	for _, m := range sandboxModes {
		t.Run(m.name, func(t *testing.T) {
			a := send(t, "POST", m.base+"/Patient/$member-match", token, nil, membermatch.In(sandboxMember.Parts(membermatch.OptIn(sandboxPayer, policyRegular))))
			var out map[string]any
			if a.status != http.StatusOK || json.Unmarshal(a.body, &out) != nil || !synthetic(out) {
				t.Fatalf("sandbox $member-match of sandbox-01: %s", a)
			}
			if !bytes.Contains(a.body, []byte(`"FWSB0001"`)) {
				t.Fatalf("the answer is not sandbox-01's member identifier: %s", a.body)
			}
			// A real member, sent exactly as the production API matches her, is nobody here.
			real := send(t, "POST", m.base+"/Patient/$member-match", token, nil, memberMatchIn(memberParts(t, "p2p-exact", "p2p-coverage-exact", optIn(sandboxPayer))))
			if real.status != 422 || !isOperationOutcome(real.body) {
				t.Fatalf("sandbox $member-match of a real member: %s", real)
			}
			// The synthetic member's data leaves, tagged; nothing else does.
			eobs := send(t, "GET", m.base+"/ExplanationOfBenefit?patient=sandbox-01", token, nil, nil)
			if eobs.status != http.StatusOK {
				t.Fatalf("sandbox-01's claims: %s", eobs)
			}
			rs := entries(t, eobs.body)
			if len(rs) == 0 {
				t.Fatal("sandbox-01's claims are not found through the sandbox")
			}
			for _, r := range rs {
				if !synthetic(r) {
					t.Errorf("%v/%v left the sandbox untagged", r["resourceType"], r["id"])
				}
			}
			if a := send(t, "GET", m.base+"/Patient/p2p-exact", token, nil, nil); a.status != http.StatusNotFound {
				t.Errorf("a real member read through the sandbox: %s", a)
			}
		})
	}
	// What the matches stored is synthetic and never a real member's.
	q := url.Values{"_tag": {consentTag + "|" + clientID}, "_count": {"500"}}
	_, body := hapi(t, "GET", "Consent?"+q.Encode(), nil)
	stored := entries(t, body)
	if len(stored) == 0 {
		t.Fatal("the sandbox matches stored no Consent")
	}
	for _, c := range stored {
		if !synthetic(c) || fmt.Sprint(c["patient"]) != fmt.Sprint(map[string]any{"reference": "Patient/sandbox-01"}) {
			t.Errorf("stored Consent %v: untagged or not sandbox-01's", c["id"])
		}
	}
}

func TestSandboxPayerIsRefusedOnPayerToPayerAndProductionPayerOnTheSandbox(t *testing.T) {
	evidence.Proves(t, "SEC-05")
	requireSandboxServed(t)
	_, sandboxToken := sandboxPayerToken(t)
	production := backend(t, "payer-b")
	body := membermatch.In(sandboxMember.Parts(membermatch.OptIn(sandboxPayer, policyRegular)))
	for _, m := range sandboxModes {
		if a := send(t, "POST", m.production+"/Patient/$member-match", sandboxToken, nil, body); a.status != http.StatusForbidden || !isOperationOutcome(a.body) {
			t.Errorf("%s: a sandbox payer on Payer-to-Payer: %s, want 403", m.name, a)
		}
		if a := send(t, "POST", m.base+"/Patient/$member-match", production, nil, body); a.status != http.StatusForbidden || !isOperationOutcome(a.body) {
			t.Errorf("%s: payer-b on the sandbox: %s, want 403", m.name, a)
		}
	}
}
