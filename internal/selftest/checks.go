package selftest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Requirement ids of internal/evidence's table (requirements.yaml) that the checks prove; a test keeps every
// one of them in the table.
const (
	reqSmartDisc      = "SMART-01"    // .well-known/smart-configuration
	reqCapability     = "SMART-02"    // [base]/metadata names the OAuth endpoints
	reqTokens         = "SMART-03"    // no, forged, unsigned, expired token or one in the query: 401
	reqChallenge      = "SMART-04"    // 401/403 carry an RFC 6750 Bearer challenge
	reqScopes         = "SMART-05"    // scopes enforced per type
	reqBackend        = "BACKEND-01"  // client_credentials with private_key_jwt reads what its API allows
	reqOwnAPI         = "BACKEND-03"  // clients only on their own API
	reqPatientAcc     = "CMS-PA-01"   // a member's app reads the member's data
	reqOwnDataOnly    = "CMS-PA-02"   // and nothing of anybody else's
	reqProvider       = "CMS-PROV-01" // attributed members only
	reqPayerOptIn     = "CMS-P2P-01"  // opted-in members only
	reqPayersOnly     = "CMS-P2P-04"  // member and provider tokens refused on Payer-to-Payer
	reqPriorAuthOwner = "CMS-PAU-06"  // prior auth: provider systems only
	reqPriorAuthAPI   = "CMS-PAU-01"  // a provider submits and gets the decision in the same exchange
	reqPASSubmit      = "PAS-01"      // $submit answers a PAS response Bundle with the X12 review action
	reqPASInquire     = "PAS-04"      // $inquire answers the submitter
	reqRefusalSame    = "SEC-01"      // not yours answers like missing
	reqNoSmuggling    = "SEC-02"      // parameters, paths and headers smuggle nothing out
	reqRateLimit      = "OPS-RATE-01" // 429 with Retry-After
	reqAudit          = "AUD-01"      // a record per request
)

func checks() []check {
	return []check{
		{"discovery/smart-configuration", []string{reqSmartDisc}, checkSmartConfiguration},
		{"discovery/capability-statement", []string{reqCapability}, checkCapabilityStatement},
		{"scopes/member-reads-own-data", []string{reqPatientAcc}, checkMemberReadsOwn},
		{"scopes/no-token-refused", []string{reqTokens, reqChallenge}, checkNoToken},
		{"scopes/token-without-scope-refused", []string{reqScopes, reqChallenge}, checkWithoutScope},
		{"scopes/client-on-another-api-refused", []string{reqOwnAPI}, checkWrongAPI},
		{"scopes/other-patient-refused", []string{reqOwnDataOnly}, checkOtherPatient},
		{"refusal/not-yours-answers-like-not-found", []string{reqRefusalSame, reqOwnDataOnly}, checkRefusalEquivalence},
		{"datascope/provider-access-attributed-only", []string{reqProvider, reqBackend}, checkProviderScope},
		{"datascope/payer-to-payer-opted-in-only", []string{reqPayerOptIn, reqPayersOnly}, checkPayerScope},
		{"datascope/prior-auth-provider-systems-only", []string{reqPriorAuthOwner}, checkPriorAuth},
		{"prior-auth/submit-and-inquire-writes", []string{reqPriorAuthAPI, reqPASSubmit, reqPASInquire}, checkPriorAuthWrites},
		{"ratelimit/burst-answers-429", []string{reqRateLimit}, checkRateLimit},
		{"adversarial/search-bypass", []string{reqNoSmuggling, reqOwnDataOnly}, checkSearchBypass},
		{"adversarial/token-in-query-string", []string{reqTokens}, checkTokenInQuery},
		{"adversarial/forged-expired-unsigned-token", []string{reqTokens, reqChallenge}, checkForgedTokens},
		{"adversarial/unknown-api-path", []string{reqNoSmuggling}, checkUnknownPath},
		{"adversarial/header-spoofing", []string{reqNoSmuggling}, checkHeaderSpoofing},
		// Last: it looks for the records of every answer above.
		{"audit/records-appear", []string{reqAudit}, checkAuditRecords},
	}
}

// apis lists the configured APIs by name.
func (r *runner) apis() [][2]string {
	var out [][2]string
	for _, a := range [][2]string{{"patient-access", r.c.APIs.PatientAccess}, {"provider-access", r.c.APIs.ProviderAccess},
		{"payer-to-payer", r.c.APIs.PayerToPayer}, {"prior-auth", r.c.APIs.PriorAuth}} {
		if a[1] != "" {
			out = append(out, a)
		}
	}
	return out
}

func failf(format string, a ...any) (Outcome, string) { return Fail, fmt.Sprintf(format, a...) }
func skipf(format string, a ...any) (Outcome, string) { return Skip, fmt.Sprintf(format, a...) }

// SMART App Launch 2.2 §Discovery: [base]/.well-known/smart-configuration, JSON, without a token; the
// required fields, authorization_code among the grant types; PKCE S256 only (plain is forbidden).
func checkSmartConfiguration(ctx context.Context, r *runner) (Outcome, string) {
	var seen []string
	for _, a := range r.apis() {
		ans, err := r.send(ctx, a[0]+" smart-configuration", http.MethodGet, a[1]+"/.well-known/smart-configuration", "", nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 200 {
			return failf("%s: %d, want 200", a[0], ans.status)
		}
		var sc struct {
			TokenEndpoint string   `json:"token_endpoint"`
			AuthzEndpoint string   `json:"authorization_endpoint"`
			Capabilities  []string `json:"capabilities"`
			GrantTypes    []string `json:"grant_types_supported"`
			PKCE          []string `json:"code_challenge_methods_supported"`
		}
		if err := json.Unmarshal(ans.body, &sc); err != nil {
			return failf("%s: not JSON: %v", a[0], err)
		}
		switch {
		case sc.TokenEndpoint == "":
			return failf("%s: no token_endpoint", a[0])
		case len(sc.Capabilities) == 0:
			return failf("%s: no capabilities", a[0])
		case !slices.Contains(sc.GrantTypes, "authorization_code"): // SMART 2.2 §Discovery: SHALL include it
			return failf("%s: grant_types_supported %v lacks authorization_code", a[0], sc.GrantTypes)
		case sc.AuthzEndpoint == "" || !slices.Contains(sc.PKCE, "S256") || slices.Contains(sc.PKCE, "plain"):
			return failf("%s: authorization_endpoint %q, PKCE methods %v: want an endpoint and S256, never plain", a[0], sc.AuthzEndpoint, sc.PKCE)
		}
		seen = append(seen, a[0])
	}
	if len(seen) == 0 {
		return skipf("no API configured")
	}
	return Pass, "served for " + strings.Join(seen, ", ")
}

// FHIR R4 §3.1.0.1 / SMART §Discovery: [base]/metadata is a CapabilityStatement (server, 4.0.1, JSON) and
// says the API is secured (rest.security, the SMART oauth-uris extension or the SMART service code).
func checkCapabilityStatement(ctx context.Context, r *runner) (Outcome, string) {
	var seen []string
	for _, a := range r.apis() {
		ans, err := r.send(ctx, a[0]+" metadata", http.MethodGet, a[1]+"/metadata", "", nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		var cs struct {
			ResourceType string   `json:"resourceType"`
			FHIRVersion  string   `json:"fhirVersion"`
			Kind         string   `json:"kind"`
			Format       []string `json:"format"`
			Rest         []struct {
				Mode     string          `json:"mode"`
				Security json.RawMessage `json:"security"`
			} `json:"rest"`
		}
		if ans.status != 200 || json.Unmarshal(ans.body, &cs) != nil || cs.ResourceType != "CapabilityStatement" {
			return failf("%s: %d %.120s, want a CapabilityStatement", a[0], ans.status, ans.body)
		}
		if !strings.HasPrefix(cs.FHIRVersion, "4.0") || len(cs.Rest) == 0 || cs.Rest[0].Mode != "server" {
			return failf("%s: fhirVersion %q, rest %d: want an R4 server statement", a[0], cs.FHIRVersion, len(cs.Rest))
		}
		if !slices.ContainsFunc(cs.Format, func(f string) bool { return strings.Contains(f, "json") }) {
			return failf("%s: format %v lacks json", a[0], cs.Format)
		}
		sec := string(cs.Rest[0].Security)
		if !strings.Contains(sec, "oauth-uris") && !strings.Contains(sec, "SMART-on-FHIR") {
			return failf("%s: rest.security does not name SMART (oauth-uris extension or SMART-on-FHIR service)", a[0])
		}
		seen = append(seen, a[0])
	}
	if len(seen) == 0 {
		return skipf("no API configured")
	}
	return Pass, "CapabilityStatement for " + strings.Join(seen, ", ")
}

// principal returns who's token for api, or, when there is none, the outcome to return: Skip (not
// configured) or Fail (configured, and getting it failed).
func (r *runner) principal(ctx context.Context, who, api string) (string, Outcome, string) {
	if api == "" {
		return "", Skip, "the API is not configured"
	}
	tok, ok, err := r.token(ctx, who)
	if !ok {
		return "", Skip, "no " + who + " in the config"
	}
	if err != nil {
		return "", Fail, err.Error()
	}
	return tok, "", ""
}

func (r *runner) memberReady(ctx context.Context) (string, Outcome, string) {
	if r.c.Member.Patient == "" || r.c.Member.OtherPatient == "" {
		return "", Skip, "member.patient and member.other_patient are not set"
	}
	return r.principal(ctx, "member", r.c.APIs.PatientAccess)
}

func checkMemberReadsOwn(ctx context.Context, r *runner) (Outcome, string) {
	tok, o, d := r.memberReady(ctx)
	if tok == "" {
		return o, d
	}
	base, own := r.c.APIs.PatientAccess, r.c.Member.Patient
	ans, err := r.send(ctx, "member reads own Patient", http.MethodGet, base+"/Patient/"+own, tok, nil, nil)
	if err != nil {
		return Fail, err.Error()
	}
	var p struct{ ResourceType, ID string }
	if ans.status != 200 || json.Unmarshal(ans.body, &p) != nil || p.ResourceType != "Patient" || p.ID != own {
		return failf("Patient/%s: %d %.120s, want the member's Patient", own, ans.status, ans.body)
	}
	ans, err = r.send(ctx, "member searches own EOB", http.MethodGet, base+"/ExplanationOfBenefit?patient="+url.QueryEscape(own), tok, nil, nil)
	if err != nil {
		return Fail, err.Error()
	}
	if ans.status != 200 || resourceType(ans.body) != "Bundle" {
		return failf("ExplanationOfBenefit?patient=%s: %d %.120s, want a Bundle", own, ans.status, ans.body)
	}
	if leak := r.leaks(ans.body, r.c.Member.OtherPatient); leak != "" {
		return failf("the member's EOB search carries %s", leak)
	}
	return Pass, fmt.Sprintf("Patient/%s and its EOB search: 200", own)
}

// SMART App Launch 2.2 / RFC 6750 §3: a request without a token is refused with 401 and an OperationOutcome.
func checkNoToken(ctx context.Context, r *runner) (Outcome, string) {
	var seen []string
	for _, a := range r.apis() {
		path := a[1] + "/Patient"
		if a[0] == "prior-auth" {
			path = a[1] + "/Subscription"
		}
		ans, err := r.send(ctx, a[0]+" without a token", http.MethodGet, path, "", nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 401 || !isOutcome(ans.body) {
			return failf("%s %s without a token: %d %.120s, want 401 OperationOutcome", a[0], path, ans.status, ans.body)
		}
		if msg := challenge(ans, ""); msg != "" {
			return failf("%s without a token: %s", a[0], msg)
		}
		seen = append(seen, a[0])
	}
	if len(seen) == 0 {
		return skipf("no API configured")
	}
	return Pass, "401 on " + strings.Join(seen, ", ")
}

// SMART App Launch 2.2 §Scopes: a token whose scopes do not grant the type is refused (403).
func checkWithoutScope(ctx context.Context, r *runner) (Outcome, string) {
	if r.c.Member.Patient == "" {
		return skipf("member.patient is not set")
	}
	tok, o, d := r.principal(ctx, "member-limited", r.c.APIs.PatientAccess)
	if tok == "" {
		return o, d + " (member.limited_token_file: the member's token without ExplanationOfBenefit)"
	}
	ans, err := r.send(ctx, "limited token searches EOB", http.MethodGet, r.c.APIs.PatientAccess+"/ExplanationOfBenefit?patient="+url.QueryEscape(r.c.Member.Patient), tok, nil, nil)
	if err != nil {
		return Fail, err.Error()
	}
	if ans.status != 403 || !isOutcome(ans.body) {
		return failf("EOB search with a token lacking its scope: %d %.120s, want 403 OperationOutcome", ans.status, ans.body)
	}
	if msg := challenge(ans, "insufficient_scope"); msg != "" {
		return failf("EOB search without the scope: %s", msg)
	}
	return Pass, "EOB search without the scope: 403, Bearer error=insufficient_scope"
}

// A client is registered for its APIs only: a member's app on Provider Access and a provider's backend on
// Patient Access are refused.
func checkWrongAPI(ctx context.Context, r *runner) (Outcome, string) {
	var done []string
	member, o, d := r.principal(ctx, "member", r.c.APIs.PatientAccess)
	if o == Fail {
		return Fail, d
	}
	provider, o, d := r.principal(ctx, "provider", r.c.APIs.ProviderAccess)
	if o == Fail {
		return Fail, d
	}
	if tok := member; tok != "" && r.c.APIs.ProviderAccess != "" {
		ans, err := r.send(ctx, "member on provider access", http.MethodGet, r.c.APIs.ProviderAccess+"/Patient", tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 403 && ans.status != 401 {
			return failf("the member's token on Provider Access: %d, want 403", ans.status)
		}
		done = append(done, "member on Provider Access")
	}
	if tok := provider; tok != "" && r.c.APIs.PatientAccess != "" && r.c.Member.Patient != "" {
		ans, err := r.send(ctx, "provider on patient access", http.MethodGet, r.c.APIs.PatientAccess+"/Patient/"+r.c.Member.Patient, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 403 && ans.status != 401 {
			return failf("the provider's token on Patient Access: %d, want 403", ans.status)
		}
		done = append(done, "provider on Patient Access")
	}
	if len(done) == 0 {
		return skipf("needs the member and Provider Access, or the provider and Patient Access")
	}
	return Pass, "refused: " + strings.Join(done, ", ")
}

func checkOtherPatient(ctx context.Context, r *runner) (Outcome, string) {
	tok, o, d := r.memberReady(ctx)
	if tok == "" {
		return o, d
	}
	base, other := r.c.APIs.PatientAccess, r.c.Member.OtherPatient
	for _, path := range []string{"/Patient/" + other, "/ExplanationOfBenefit?patient=" + other, "/ExplanationOfBenefit?patient=Patient/" + other,
		"/Coverage?beneficiary=Patient/" + other} {
		ans, err := r.send(ctx, "member asks for another patient", http.MethodGet, base+path, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if msg := r.judge(ans, other); msg != "" {
			return failf("%s: %s", path, msg)
		}
		if ans.status/100 == 2 && resourceType(ans.body) != "Bundle" {
			return failf("%s: %d %s, want a refusal", path, ans.status, resourceType(ans.body))
		}
	}
	return Pass, "another patient's Patient, EOBs and Coverage: refused or empty"
}

// Not found and not yours answer alike (status and OperationOutcome), so that an id cannot be probed.
func checkRefusalEquivalence(ctx context.Context, r *runner) (Outcome, string) {
	type pair struct{ who, api, id string }
	var pairs []pair
	if r.c.Member.OtherPatient != "" {
		pairs = append(pairs, pair{"member", r.c.APIs.PatientAccess, r.c.Member.OtherPatient})
	}
	if r.c.Provider.Unattributed != "" {
		pairs = append(pairs, pair{"provider", r.c.APIs.ProviderAccess, r.c.Provider.Unattributed})
	}
	if r.c.Payer.NotOptedIn != "" {
		pairs = append(pairs, pair{"payer", r.c.APIs.PayerToPayer, r.c.Payer.NotOptedIn})
	}
	var done []string
	for _, p := range pairs {
		tok, o, d := r.principal(ctx, p.who, p.api)
		if o == Fail {
			return Fail, d
		}
		if tok == "" {
			continue
		}
		theirs, err := r.send(ctx, p.who+" reads a patient not theirs", http.MethodGet, p.api+"/Patient/"+p.id, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		missingID := "selftest-none-" + randomHex(8)
		missing, err := r.send(ctx, p.who+" reads a missing patient", http.MethodGet, p.api+"/Patient/"+missingID, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if theirs.status/100 == 2 {
			return failf("%s: Patient/%s answered %d", p.who, p.id, theirs.status)
		}
		if theirs.status != missing.status || outcomeShape(theirs.body, p.id) != outcomeShape(missing.body, missingID) {
			return failf("%s: not theirs %d %.100s; missing %d %.100s: want the same answer", p.who, theirs.status, theirs.body, missing.status, missing.body)
		}
		done = append(done, fmt.Sprintf("%s (%d)", p.who, theirs.status))
	}
	if len(done) == 0 {
		return skipf("no principal with another patient's id configured")
	}
	return Pass, "not theirs = not found for " + strings.Join(done, ", ")
}

// CMS-0057-F Provider Access: a provider sees the members attributed to it, nobody else.
func checkProviderScope(ctx context.Context, r *runner) (Outcome, string) {
	if r.c.Provider.Attributed == "" || r.c.Provider.Unattributed == "" {
		return skipf("provider.attributed_patient and provider.unattributed_patient are not set")
	}
	tok, o, d := r.principal(ctx, "provider", r.c.APIs.ProviderAccess)
	if tok == "" {
		return o, d
	}
	base := r.c.APIs.ProviderAccess
	ans, err := r.send(ctx, "provider reads an attributed patient", http.MethodGet, base+"/Patient/"+r.c.Provider.Attributed, tok, nil, nil)
	if err != nil {
		return Fail, err.Error()
	}
	if ans.status != 200 || resourceType(ans.body) != "Patient" {
		return failf("attributed Patient/%s: %d %.120s, want 200 Patient", r.c.Provider.Attributed, ans.status, ans.body)
	}
	for _, path := range []string{"/Patient/" + r.c.Provider.Unattributed, "/ExplanationOfBenefit?patient=" + r.c.Provider.Unattributed} {
		ans, err := r.send(ctx, "provider asks for an unattributed patient", http.MethodGet, base+path, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if msg := r.judge(ans, r.c.Provider.Unattributed); msg != "" {
			return failf("%s: %s", path, msg)
		}
		if ans.status/100 == 2 && resourceType(ans.body) != "Bundle" {
			return failf("unattributed %s: %d, want a refusal", path, ans.status)
		}
	}
	return Pass, "attributed: 200; unattributed: refused"
}

// CMS-0057-F Payer-to-Payer: another payer reads only members who opted in to it.
func checkPayerScope(ctx context.Context, r *runner) (Outcome, string) {
	if r.c.Payer.NotOptedIn == "" {
		return skipf("payer.not_opted_in_patient is not set")
	}
	tok, o, d := r.principal(ctx, "payer", r.c.APIs.PayerToPayer)
	if tok == "" {
		return o, d
	}
	base, not := r.c.APIs.PayerToPayer, r.c.Payer.NotOptedIn
	for _, path := range []string{"/Patient/" + not, "/ExplanationOfBenefit?patient=Patient/" + not, "/Coverage?patient=Patient/" + not} {
		ans, err := r.send(ctx, "payer asks for a member not opted in", http.MethodGet, base+path, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if msg := r.judge(ans, not); msg != "" {
			return failf("%s: %s", path, msg)
		}
		if ans.status/100 == 2 && resourceType(ans.body) != "Bundle" {
			return failf("not opted in %s: %d, want a refusal", path, ans.status)
		}
	}
	// Payer-to-Payer is for payers: a member's or a provider's valid token is refused there.
	others := ""
	for _, who := range []string{"member", "provider"} {
		otok, ok, err := r.token(ctx, who)
		if !ok {
			continue
		}
		if err != nil {
			return Fail, err.Error()
		}
		ans, err := r.send(ctx, who+" on payer-to-payer", http.MethodGet, base+"/Patient/"+not, otok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 401 && ans.status != 403 || !isOutcome(ans.body) {
			return failf("the %s's token on Payer-to-Payer: %d, want 403 OperationOutcome", who, ans.status)
		}
		others += "; " + who + "'s token refused"
	}
	if r.c.Payer.OptedIn == "" {
		return Pass, "a member not opted in: refused" + others + " (payer.opted_in_patient not set: the opted-in read is not checked)"
	}
	ans, err := r.send(ctx, "payer reads an opted-in member", http.MethodGet, base+"/Patient/"+r.c.Payer.OptedIn, tok, nil, nil)
	if err != nil {
		return Fail, err.Error()
	}
	if ans.status != 200 || resourceType(ans.body) != "Patient" {
		return failf("opted-in Patient/%s: %d %.120s, want 200", r.c.Payer.OptedIn, ans.status, ans.body)
	}
	return Pass, "opted in: 200; not opted in: refused" + others
}

// inquiryProbe is a Claim/$inquire body that names no request of anybody's: it reaches the operation (a
// 4xx OperationOutcome from PAS validation or the lookup) and writes nothing.
const inquiryProbe = `{"resourceType":"Bundle","type":"collection","identifier":{"system":"https://fhirwall.dev/selftest","value":"selftest-probe"},"entry":[]}`

// CMS-0057-F Prior Authorization API: $submit and $inquire are for provider systems; a member's token or
// another payer's is refused before anything is read or written. The provider's $inquire reaches the
// operation (no 401/403). Nothing here writes: the refused $submit never reaches the operation, and the
// $inquire names no request.
func checkPriorAuth(ctx context.Context, r *runner) (Outcome, string) {
	base := r.c.APIs.PriorAuth
	if base == "" {
		return skipf("apis.prior_auth is not set")
	}
	var done []string
	for _, who := range []string{"member", "payer"} {
		tok, ok, err := r.token(ctx, who)
		if !ok {
			continue
		}
		if err != nil {
			return Fail, err.Error()
		}
		for _, op := range []string{"$submit", "$inquire"} {
			ans, err := r.send(ctx, who+" "+op, http.MethodPost, base+"/Claim/"+op, tok, nil, []byte(inquiryProbe))
			if err != nil {
				return Fail, err.Error()
			}
			if ans.status != 403 && ans.status != 401 || !isOutcome(ans.body) {
				return failf("%s's token, Claim/%s: %d %.120s, want 403 OperationOutcome", who, op, ans.status, ans.body)
			}
		}
		done = append(done, who+" refused")
	}
	if tok, ok, err := r.token(ctx, "provider-pa"); ok {
		if err != nil {
			return Fail, err.Error()
		}
		ans, err := r.send(ctx, "provider $inquire", http.MethodPost, base+"/Claim/$inquire", tok, nil, []byte(inquiryProbe))
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status == 401 || ans.status == 403 || ans.status/100 == 5 {
			return failf("the provider's Claim/$inquire: %d %.120s, want the operation's answer", ans.status, ans.body)
		}
		if ans.status/100 != 2 && !isOutcome(ans.body) {
			return failf("the provider's Claim/$inquire: %d without an OperationOutcome", ans.status)
		}
		done = append(done, fmt.Sprintf("provider's $inquire reached (%d)", ans.status))
	}
	if len(done) == 0 {
		return skipf("no member, payer or provider configured")
	}
	return Pass, strings.Join(done, "; ")
}

// reviewActionURL is PAS's extension that carries the X12 306 review action on a ClaimResponse's items.
const reviewActionURL = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction"

// The one check that writes, and only with -allow-writes: the provider submits the configured PAS request
// (for a synthetic member) with Claim/$submit and gets a PAS response Bundle whose ClaimResponse carries a
// review action, then asks Claim/$inquire with the configured inquiry and gets the decision again; the
// member's token asking the same inquiry is refused.
func checkPriorAuthWrites(ctx context.Context, r *runner) (Outcome, string) {
	w := r.c.PriorAuthWrites
	if !r.o.AllowWrites {
		return skipf("writes: not asked (-allow-writes with prior_auth_writes submits one request for a synthetic member)")
	}
	if w.RequestBundleFile == "" {
		return skipf("prior_auth_writes is not configured")
	}
	base := w.API
	if base == "" {
		base = r.c.APIs.PriorAuth
	}
	if base == "" {
		return skipf("no prior-auth base path (apis.prior_auth or prior_auth_writes.api)")
	}
	request, err := os.ReadFile(r.c.file(w.RequestBundleFile))
	if err != nil {
		return Fail, err.Error()
	}
	inquiry, err := os.ReadFile(r.c.file(w.InquiryBundleFile))
	if err != nil {
		return Fail, err.Error()
	}
	tok, o, d := r.principal(ctx, "provider-pa-write", base)
	if tok == "" {
		return o, d
	}
	for _, step := range []struct {
		op   string
		body []byte
	}{{"$submit", request}, {"$inquire", inquiry}} {
		ans, err := r.send(ctx, "provider "+step.op+" (writes)", http.MethodPost, base+"/Claim/"+step.op, tok, nil, step.body)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 200 || resourceType(ans.body) != "Bundle" {
			return failf("Claim/%s for synthetic member %s: %d %.160s, want 200 and a PAS response Bundle", step.op, w.Patient, ans.status, ans.body)
		}
		if !strings.Contains(string(ans.body), `"ClaimResponse"`) || !strings.Contains(string(ans.body), reviewActionURL) {
			return failf("Claim/%s: the Bundle holds no ClaimResponse with a PAS review action", step.op)
		}
	}
	if mt, ok, err := r.token(ctx, "member"); ok && err == nil {
		ans, err := r.send(ctx, "member $inquire of the provider's request", http.MethodPost, base+"/Claim/$inquire", mt, nil, inquiry)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 403 && ans.status != 401 && ans.status != 404 {
			return failf("the member's $inquire of the provider's request: %d, want a refusal", ans.status)
		}
	}
	return Pass, fmt.Sprintf("wrote one prior-auth request for synthetic member %s on %s: $submit and $inquire answered PAS response Bundles", w.Patient, base)
}

// Rate limits answer 429 with Retry-After in whole seconds and a throttled OperationOutcome. One burst of
// -rate-limit-burst N requests, never more: production traffic must not pay for the check.
func checkRateLimit(ctx context.Context, r *runner) (Outcome, string) {
	n := r.o.RateLimitBurst
	if n <= 0 {
		return skipf("not asked: -rate-limit-burst N sends one burst of N requests")
	}
	rl := r.c.RateLimit
	api := map[string]string{"": r.c.APIs.PayerToPayer, "payer_to_payer": r.c.APIs.PayerToPayer, "patient_access": r.c.APIs.PatientAccess,
		"provider_access": r.c.APIs.ProviderAccess, "prior_auth": r.c.APIs.PriorAuth}[rl.API]
	if api == "" {
		return skipf("rate_limit.api's base path is not configured")
	}
	path := rl.Path
	if path == "" {
		path = "/metadata"
	}
	tok := ""
	if rl.As != "" {
		var o Outcome
		var d string
		if tok, o, d = r.principal(ctx, rl.As, api); tok == "" {
			return o, d
		}
	}
	var mu sync.Mutex
	var throttled *answer
	counts := map[int]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			a, err := r.send(ctx, "", http.MethodGet, api+path, tok, nil, nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				counts[0]++
				return
			}
			counts[a.status]++
			if a.status == 429 && throttled == nil {
				throttled = &a
			}
		}()
	}
	wg.Wait()
	if throttled == nil {
		return failf("%d requests at once to %s: no 429 (answers %v)", n, path, counts)
	}
	if s, err := strconv.Atoi(throttled.header.Get("Retry-After")); err != nil || s < 1 {
		return failf("429 with Retry-After %q, want whole seconds >= 1", throttled.header.Get("Retry-After"))
	}
	var oo struct {
		ResourceType string
		Issue        []struct{ Code string }
	}
	if json.Unmarshal(throttled.body, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || oo.Issue[0].Code != "throttled" {
		return failf("429 body is not a throttled OperationOutcome: %.120s", throttled.body)
	}
	if counts[0] > 0 || slices.ContainsFunc(mapsKeys(counts), func(s int) bool { return s/100 == 5 }) {
		return failf("the burst got errors: %v", counts)
	}
	return Pass, fmt.Sprintf("one burst of %d: answers %v; 429s carry Retry-After and a throttled OperationOutcome", n, counts)
}

// The searches a naive gateway lets through: result parameters that pull other resources in, chains and
// reverse chains, modifiers; each against the member's own data, with another patient's id where a value is
// needed. Every 2xx must carry nothing of the other patient; every refusal must be an OperationOutcome.
func checkSearchBypass(ctx context.Context, r *runner) (Outcome, string) {
	tok, o, d := r.memberReady(ctx)
	if tok == "" {
		return o, d
	}
	own, other := url.QueryEscape(r.c.Member.Patient), url.QueryEscape(r.c.Member.OtherPatient)
	probes := []string{
		"/Patient?_id=" + own + "&_revinclude=ExplanationOfBenefit:patient",
		"/Patient?_id=" + own + "&_revinclude=*",
		"/ExplanationOfBenefit?patient=" + own + "&_include=ExplanationOfBenefit:patient",
		"/ExplanationOfBenefit?patient=" + own + "&_include=*",
		"/ExplanationOfBenefit?patient=" + own + "&_include:iterate=*",
		"/Patient/" + own + "?_elements=id,link",
		"/ExplanationOfBenefit?patient=" + own + "&_elements=patient,provider",
		"/ExplanationOfBenefit?patient.identifier=" + other,
		"/ExplanationOfBenefit?patient:Patient._id=" + other,
		"/ExplanationOfBenefit?patient:missing=false",
		"/ExplanationOfBenefit?patient:not=" + own,
		"/ExplanationOfBenefit?patient=" + own + "," + other,
		"/ExplanationOfBenefit?patient=" + own + "&patient=" + other,
		"/Patient?_has:ExplanationOfBenefit:patient:status=active",
		"/Patient?_id=" + other,
		"/Patient?_id:not=" + own,
		"/Patient?link=Patient/" + other,
		"/ExplanationOfBenefit?_id:missing=false&patient=" + other,
		"/Patient/" + own + "/$everything",
		"/ExplanationOfBenefit?patient=" + own + "&_count=1000",
	}
	for _, p := range probes {
		ans, err := r.send(ctx, "search bypass", http.MethodGet, r.c.APIs.PatientAccess+p, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if msg := r.judge(ans, r.c.Member.OtherPatient); msg != "" {
			return failf("%s: %s", p, msg)
		}
	}
	// The same as a POST _search form.
	ans, err := r.sendForm(ctx, tok, r.c.APIs.PatientAccess+"/ExplanationOfBenefit/_search", "patient="+other)
	if err != nil {
		return Fail, err.Error()
	}
	if msg := r.judge(ans, r.c.Member.OtherPatient); msg != "" {
		return failf("POST _search patient=other: %s", msg)
	}
	return Pass, fmt.Sprintf("%d search probes: nothing of another patient", len(probes)+1)
}

func (r *runner) sendForm(ctx context.Context, tok, path, form string) (answer, error) {
	u := strings.TrimSuffix(r.o.Base.String(), "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := r.o.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return answer{}, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// RFC 6750 §2.3 allows access_token in the query; SMART does not, and a token in a URL ends up in logs:
// refused with 401, and nothing of the member's is served.
func checkTokenInQuery(ctx context.Context, r *runner) (Outcome, string) {
	tok, o, d := r.memberReady(ctx)
	if tok == "" {
		return o, d
	}
	ans, err := r.send(ctx, "token in the query string", http.MethodGet, r.c.APIs.PatientAccess+"/Patient/"+r.c.Member.Patient+"?access_token="+url.QueryEscape(tok), "", nil, nil)
	if err != nil {
		return Fail, err.Error()
	}
	if ans.status != 401 || !isOutcome(ans.body) {
		return failf("access_token in the query: %d, want 401 OperationOutcome", ans.status)
	}
	return Pass, "access_token in the query: 401"
}

// Token validation: a token whose signature was changed, the same claims unsigned (alg none) and a token
// signed by a key the issuer never had, expired: all 401.
func checkForgedTokens(ctx context.Context, r *runner) (Outcome, string) {
	tok, o, d := r.memberReady(ctx)
	if tok == "" {
		return o, d
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return skipf("the member's token is not a JWT (opaque tokens are checked by introspection)")
	}
	sig := []byte(parts[2])
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	forged := parts[0] + "." + parts[1] + "." + string(sig)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	expired, err := expiredToken(parts[1], r.o.Now())
	if err != nil {
		return Fail, err.Error()
	}
	r.mu.Lock()
	r.secrets = append(r.secrets, forged, none, expired)
	r.mu.Unlock()
	for name, t := range map[string]string{"changed signature": forged, "alg none": none, "expired, foreign key": expired} {
		ans, err := r.send(ctx, "forged token", http.MethodGet, r.c.APIs.PatientAccess+"/Patient/"+r.c.Member.Patient, t, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status != 401 || !isOutcome(ans.body) {
			return failf("%s: %d, want 401 OperationOutcome", name, ans.status)
		}
		if msg := challenge(ans, "invalid_token"); msg != "" {
			return failf("%s: %s", name, msg)
		}
	}
	return Pass, "changed signature, alg none, expired with a foreign key: 401, Bearer error=invalid_token"
}

// Unknown paths never reach the FHIR server: another API's name, the FHIR server's own base, a path that
// climbs out of the API. None is served.
func checkUnknownPath(ctx context.Context, r *runner) (Outcome, string) {
	tok, o, d := r.memberReady(ctx)
	if tok == "" {
		return o, d
	}
	own, other := r.c.Member.Patient, r.c.Member.OtherPatient
	for _, p := range []string{"/selftest-no-such-api/fhir/Patient/" + own, "/fhir/Patient/" + other, "/Patient/" + other,
		r.c.APIs.PatientAccess + "/../../fhir/Patient/" + other, r.c.APIs.PatientAccess + "/%2e%2e/%2e%2e/fhir/Patient/" + other,
		r.c.APIs.PatientAccess + "/Patient/" + own + "/../" + other, r.c.APIs.PatientAccess + "/Patient/" + own + "%2f..%2f" + other} {
		ans, err := r.send(ctx, "unknown path", http.MethodGet, p, tok, nil, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if ans.status/100 == 2 && r.leaks(ans.body, other) != "" || ans.status/100 == 2 && !strings.HasPrefix(p, r.c.APIs.PatientAccess+"/Patient/"+own) {
			return failf("%s: %d, want a refusal", p, ans.status)
		}
		if ans.status/100 == 3 {
			return failf("%s: redirected (%d) to %q", p, ans.status, ans.header.Get("Location"))
		}
	}
	return Pass, "unknown APIs, the FHIR server's own base and climbing paths: refused"
}

// Headers only fhirwall may set (x-fhirwall-*, forwarding headers) sent by a client change nothing: the
// other patient stays refused.
func checkHeaderSpoofing(ctx context.Context, r *runner) (Outcome, string) {
	tok, o, d := r.memberReady(ctx)
	if tok == "" {
		return o, d
	}
	other := r.c.Member.OtherPatient
	spoof := map[string]string{"X-Fhirwall-Patient": other, "X-Fhirwall-Client": r.c.Provider.ClientID, "X-Fhirwall-Decision-Id": "selftest",
		"X-Fhirwall-Allow": "true", "X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1", "X-Original-URL": "/fhir/Patient/" + other,
		"X-HTTP-Method-Override": "GET", "X-Forwarded-Host": "fhir.internal"}
	if spoof["X-Fhirwall-Client"] == "" {
		spoof["X-Fhirwall-Client"] = "provider"
	}
	for _, p := range []string{"/Patient/" + other, "/ExplanationOfBenefit?patient=" + other, "/Patient/" + r.c.Member.Patient} {
		ans, err := r.send(ctx, "header spoofing", http.MethodGet, r.c.APIs.PatientAccess+p, tok, spoof, nil)
		if err != nil {
			return Fail, err.Error()
		}
		if msg := r.judge(ans, other); msg != "" {
			return failf("%s with fhirwall's headers spoofed: %s", p, msg)
		}
		if strings.HasPrefix(p, "/Patient/"+other) && ans.status/100 == 2 {
			return failf("%s with fhirwall's headers spoofed: %d", p, ans.status)
		}
		if id := ans.header.Get("X-Fhirwall-Decision-Id"); id == "selftest" {
			return failf("the client's X-Fhirwall-Decision-Id came back as the decision id")
		}
	}
	return Pass, "x-fhirwall-* and forwarding headers from the client change nothing"
}

// challenge checks RFC 6750 §3's WWW-Authenticate: a Bearer challenge, with error=code when code is set.
func challenge(a answer, code string) string {
	h := a.header.Get("WWW-Authenticate")
	if !strings.HasPrefix(strings.ToLower(h), "bearer") {
		return fmt.Sprintf("WWW-Authenticate %q, want a Bearer challenge", h)
	}
	if code != "" && !strings.Contains(h, `error="`+code+`"`) {
		return fmt.Sprintf("WWW-Authenticate %q, want error=%q", h, code)
	}
	return ""
}

// judge returns why an answer leaks or misbehaves: a 2xx must not name the patient that is not the
// caller's; a 5xx is the deployment failing, not refusing (a check it passed would prove nothing); anything
// else but a 304 must be an OperationOutcome. "" when the answer is fine.
func (r *runner) judge(a answer, other string) string {
	if a.status >= 500 {
		return fmt.Sprintf("%d: the deployment failed rather than refused", a.status)
	}
	if a.status/100 == 2 {
		if leak := r.leaks(a.body, other); leak != "" {
			return fmt.Sprintf("%d carries %s", a.status, leak)
		}
		return ""
	}
	if a.status == 304 || isOutcome(a.body) {
		return ""
	}
	return fmt.Sprintf("%d without an OperationOutcome: %.100s", a.status, a.body)
}

// leaks names how body refers to patient id: a reference Patient/<id> or a resource whose id is it.
func (r *runner) leaks(body []byte, id string) string {
	if id == "" {
		return ""
	}
	re := regexp.MustCompile(`Patient/` + regexp.QuoteMeta(id) + `([^A-Za-z0-9.\-]|$)|"id"\s*:\s*"` + regexp.QuoteMeta(id) + `"`)
	if m := re.Find(body); m != nil {
		return fmt.Sprintf("the other patient (%q)", strings.TrimSpace(string(m)))
	}
	return ""
}

func resourceType(b []byte) string {
	var v struct {
		ResourceType string `json:"resourceType"`
	}
	json.Unmarshal(b, &v)
	return v.ResourceType
}

func isOutcome(b []byte) bool { return resourceType(b) == "OperationOutcome" }

// outcomeShape is what an OperationOutcome says, without what may differ between two answers of the same
// kind (its id and meta) and with the asked id replaced: the refusal's shape.
func outcomeShape(b []byte, askedID string) string {
	var v map[string]any
	if json.Unmarshal(b, &v) != nil {
		return "not JSON: " + string(b)
	}
	delete(v, "id")
	delete(v, "meta")
	out, _ := json.Marshal(v)
	return strings.ReplaceAll(string(out), askedID, "<id>")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func mapsKeys(m map[int]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

func readAll(resp *http.Response) ([]byte, error) {
	return io.ReadAll(io.LimitReader(resp.Body, maxBody))
}
