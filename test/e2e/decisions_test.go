//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/smartclient"
)

// tokens a member's app can hold: full patient scopes, a granular laboratory-only scope, and the ID token
// (which must never work as an access token).
type tokens struct{ full, lab, id string }

func memberTokens(t *testing.T) tokens {
	t.Helper()
	login := func(scopes ...string) *smartclient.Token {
		tok, err := smartclient.AuthorizationCodePKCE(ctx(t), issuer, "patient-app", "http://127.0.0.1:8089/callback", scopes, "member01", "fhirwall-demo")
		if err != nil {
			t.Fatalf("login member01 %v: %v", scopes, err)
		}
		return tok
	}
	full := login("openid", "fhirUser", "launch/patient", "patient/*.rs")
	lab := login("openid", "launch/patient", "patient/Observation.rs?category=laboratory")
	return tokens{full: full.AccessToken, lab: lab.AccessToken, id: full.IDToken}
}

type exchangeResult struct {
	status     int
	body       []byte
	decisionID string
}

func send(t *testing.T, method, url, token string, header map[string]string, body string) exchangeResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// Keep the path exactly as written: the table holds dot segments and encoded slashes on purpose.
	path, _, _ := strings.Cut(strings.TrimPrefix(url, "http://"+req.URL.Host), "?")
	req.URL.Opaque = path
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return exchangeResult{resp.StatusCode, b, resp.Header.Get("X-Fhirwall-Decision-Id")}
}

const fhirJSON = "application/fhir+json"

// TestOneTableBothModes runs every request-side case through Envoy + ext_authz and through the standalone
// proxy, against the real stack, and requires the same answer from both.
func TestOneTableBothModes(t *testing.T) {
	evidence.Proves(t, "SEC-03", "SMART-03", "SMART-06", "CMS-PA-02", "CMS-PA-04", "SEC-01", "SEC-02", "USCORE-02")
	tk := memberTokens(t)
	otherEOB := eobIDOf(t, "member-02")
	big := `{"resourceType":"Bundle","type":"batch","entry":[]` + strings.Repeat(" ", 1<<20) + `}`
	observation := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/member-02"}}`
	patch := `[{"op":"replace","path":"/subject/reference","value":"Patient/member-02"}]`
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/member-02"}}]}`
	transaction := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/member-01"}}]}`

	type check func(t *testing.T, body []byte)
	cases := []struct {
		name, token, method, path string
		header                    map[string]string
		body                      string
		want                      int
		check                     check
	}{
		// Discovery and the happy path.
		{name: "capabilities without a token", method: "GET", path: "/metadata", want: 200, check: resourceTypeIs("CapabilityStatement")},
		{name: "smart configuration without a token", method: "GET", path: "/.well-known/smart-configuration", want: 200, check: smartConfiguration},
		{name: "own EOBs", token: tk.full, method: "GET", path: "/ExplanationOfBenefit", want: 200, check: everyEntryOf("member-01")},
		{name: "own Patient", token: tk.full, method: "GET", path: "/Patient/member-01", want: 200},
		// HAPI's JPA server does not serve compartment searches, so the API does not either.
		{name: "own compartment search", token: tk.full, method: "GET", path: "/Patient/member-01/Observation", want: 400},
		{name: "search by POST with a form body", token: tk.full, method: "POST", path: "/Observation/_search",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "category=laboratory", want: 200, check: everyEntryOf("member-01")},
		{name: "result controls pass", token: tk.full, method: "GET", path: "/Observation?_count=1&_sort=-date", want: 200},

		// Tokens.
		{name: "no token", method: "GET", path: "/ExplanationOfBenefit", want: 401},
		{name: "garbage token", token: "not.a.jwt", method: "GET", path: "/ExplanationOfBenefit", want: 401},
		{name: "ID token as access token", token: tk.id, method: "GET", path: "/ExplanationOfBenefit", want: 401},
		{name: "alg none", token: "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjgxODAvcmVhbG1zL2ZoaXJ3YWxsIn0.", method: "GET", path: "/Patient/member-01", want: 401},
		{name: "token in the query string", method: "GET", path: "/ExplanationOfBenefit?access_token=" + tk.full, want: 401},
		{name: "oversized token", token: strings.Repeat("a", 9000), method: "GET", path: "/Patient/member-01", want: 401},

		// Not yours is not found.
		{name: "other member's EOB by id", token: tk.full, method: "GET", path: "/ExplanationOfBenefit/" + otherEOB, want: 404},
		{name: "missing EOB", token: tk.full, method: "GET", path: "/ExplanationOfBenefit/no-such-eob", want: 404},
		{name: "other Patient", token: tk.full, method: "GET", path: "/Patient/member-02", want: 404},
		{name: "search naming other patient", token: tk.full, method: "GET", path: "/ExplanationOfBenefit?patient=member-02", want: 404},
		{name: "OR list with other patient", token: tk.full, method: "GET", path: "/Observation?subject=member-01,member-02", want: 404},
		{name: "repeated patient parameter", token: tk.full, method: "GET", path: "/Observation?patient=member-01&patient=member-02", want: 404},
		{name: "other compartment parameter", token: tk.full, method: "GET", path: "/Coverage?subscriber=member-02", want: 404},
		{name: "_id-only Patient search", token: tk.full, method: "GET", path: "/Patient?_id=member-02", want: 404},
		{name: "other patient's compartment", token: tk.full, method: "GET", path: "/Patient/member-02/Observation", want: 400},
		{name: "form body naming other patient", token: tk.full, method: "POST", path: "/Observation/_search",
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "patient=member-02", want: 404},

		// Parameters.
		{name: "chained search", token: tk.full, method: "GET", path: "/Observation?subject:Patient.name=Smith", want: 400},
		{name: "reverse chain", token: tk.full, method: "GET", path: "/Patient?_has:Observation:patient:code=4548-4", want: 400},
		{name: "modifier on patient", token: tk.full, method: "GET", path: "/Observation?patient:missing=true", want: 400},
		{name: "_include is served, filtered", token: tk.full, method: "GET", path: "/ExplanationOfBenefit?_include=ExplanationOfBenefit:*", want: 200, check: onlyPatient("member-01")},
		{name: "_revinclude is served, filtered", token: tk.full, method: "GET", path: "/Patient?_revinclude=Observation:subject", want: 200, check: onlyPatient("member-01")},
		{name: "_revinclude from a non-patient anchor keeps only own data", token: tk.full, method: "GET", path: "/Practitioner?_id=pract-02&_revinclude=Observation:performer", want: 200, check: onlyPatient("member-01")},
		{name: "unknown parameter is named", token: tk.full, method: "GET", path: "/Observation?focus=x", want: 400, check: diagnosticsMention(`search parameter \"focus\" is not supported`)},
		{name: "Group member list", token: tk.full, method: "GET", path: "/Group?member=member-01", want: 400},

		// Granular scopes.
		{name: "granular scope narrows to laboratory", token: tk.lab, method: "GET", path: "/Observation", want: 200, check: everyCategory("laboratory")},
		{name: "granular scope refuses vital signs", token: tk.lab, method: "GET", path: "/Observation?category=vital-signs", want: 403},
		{name: "granular scope reads a lab result", token: tk.lab, method: "GET", path: "/Observation/observation-member-01-hba1c", want: 200},
		{name: "granular scope cannot read a vital sign", token: tk.lab, method: "GET", path: "/Observation/observation-member-01-bp", want: 404},
		{name: "granular scope grants no other type", token: tk.lab, method: "GET", path: "/Condition", want: 403},

		// Interactions the API does not serve, writes and operations.
		{name: "create", token: tk.full, method: "POST", path: "/Observation", header: map[string]string{"Content-Type": fhirJSON}, body: observation, want: 405},
		{name: "update", token: tk.full, method: "PUT", path: "/Patient/member-01", header: map[string]string{"Content-Type": fhirJSON}, body: `{"resourceType":"Patient","id":"member-01"}`, want: 405},
		{name: "JSON patch to another patient", token: tk.full, method: "PATCH", path: "/Observation/observation-member-01-bp", header: map[string]string{"Content-Type": "application/json-patch+json"}, body: patch, want: 405},
		{name: "delete", token: tk.full, method: "DELETE", path: "/Patient/member-01", want: 405},
		{name: "conditional delete", token: tk.full, method: "DELETE", path: "/Observation?patient=member-01", want: 405},
		{name: "transaction", token: tk.full, method: "POST", path: "", header: map[string]string{"Content-Type": fhirJSON}, body: transaction, want: 405},
		{name: "batch entries", token: tk.full, method: "POST", path: "", header: map[string]string{"Content-Type": fhirJSON}, body: batch, want: 400},
		{name: "own instance history", token: tk.full, method: "GET", path: "/Patient/member-01/_history", want: 200, check: onlyPatient("member-01")},
		{name: "other patient's instance history", token: tk.full, method: "GET", path: "/Patient/member-02/_history", want: 404},
		// Invariant 3: not yours = does not exist, for history as for reads (it answered 200 with no entries).
		{name: "other patient's Observation history", token: tk.full, method: "GET", path: "/Observation/observation-member-02-bp/_history", want: 404},
		{name: "other patient's Observation history _count=0", token: tk.full, method: "GET", path: "/Observation/observation-member-02-bp/_history?_count=0", want: 404},
		{name: "missing Observation history", token: tk.full, method: "GET", path: "/Observation/no-such-observation/_history", want: 404},
		{name: "other patient's Observation version", token: tk.full, method: "GET", path: "/Observation/observation-member-02-bp/_history/1", want: 404},
		{name: "system history", token: tk.full, method: "GET", path: "/_history", want: 400},
		{name: "own vread", token: tk.full, method: "GET", path: "/Patient/member-01/_history/1", want: 200, check: resourceTypeIs("Patient")},
		{name: "$everything", token: tk.full, method: "GET", path: "/Patient/member-01/$everything", want: 400},
		{name: "$export with a patient token", token: tk.full, method: "GET", path: "/$export", want: 400},
		{name: "$graphql", token: tk.full, method: "GET", path: "/$graphql?query=x", want: 400},
		{name: "system search", token: tk.full, method: "GET", path: "?_type=Patient", want: 400},
		{name: "paging link never issued", token: tk.full, method: "GET", path: "?_getpages=abc&_getpagesoffset=10", want: 404},

		// HTTP shapes.
		{name: "dot segments resolve before deciding", token: tk.full, method: "GET", path: "/Patient/x/../member-02", want: 404},
		{name: "encoded dot segments", token: tk.full, method: "GET", path: "/Patient/x/%2e%2e/member-02", want: 404},
		{name: "encoded slash", token: tk.full, method: "GET", path: "/Patient%2Fmember-02", want: 400},
		{name: "matrix parameter", token: tk.full, method: "GET", path: "/Patient/member-01;x=y", want: 400},
		{name: "method override", token: tk.full, method: "GET", path: "/Patient/member-01", header: map[string]string{"X-HTTP-Method-Override": "DELETE"}, want: 400},
		{name: "client-set internal header is ignored", token: tk.full, method: "GET", path: "/Patient/member-01", header: map[string]string{"X-Fhirwall-Decision-Id": "forged"}, want: 200},
		{name: "XML body", token: tk.full, method: "POST", path: "/Observation/_search", header: map[string]string{"Content-Type": "application/fhir+xml"}, body: "<x/>", want: 415},
		{name: "body over the limit", token: tk.full, method: "POST", path: "", header: map[string]string{"Content-Type": fhirJSON}, body: big, want: 413},
		{name: "type unknown to R4", token: tk.full, method: "GET", path: "/Foo/1", want: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got [2]exchangeResult
			for i, m := range modes {
				got[i] = send(t, c.method, m.base+c.path, c.token, c.header, c.body)
				if got[i].status != c.want {
					t.Errorf("%s: %d, want %d: %.300s", m.name, got[i].status, c.want, got[i].body)
					continue
				}
				if c.want >= 400 && !isOperationOutcome(got[i].body) {
					t.Errorf("%s: refusal is not an OperationOutcome: %.300s", m.name, got[i].body)
				}
				if c.check != nil {
					c.check(t, got[i].body)
				}
				if got[i].decisionID == "forged" {
					t.Errorf("%s: the client's decision id came back", m.name)
				}
			}
			// fhirwall's own refusals (they carry a decision id) must be byte-identical in both modes.
			if c.want >= 400 && got[0].decisionID != "" && got[1].decisionID != "" && string(got[0].body) != string(got[1].body) {
				t.Errorf("refusals differ:\n envoy      %s\n standalone %s", got[0].body, got[1].body)
			}
		})
	}
}

func resourceTypeIs(want string) func(*testing.T, []byte) {
	return func(t *testing.T, b []byte) {
		var r struct{ ResourceType string }
		if json.Unmarshal(b, &r) != nil || r.ResourceType != want {
			t.Errorf("want a %s, got %.200s", want, b)
		}
	}
}

func smartConfiguration(t *testing.T, b []byte) {
	var c struct {
		TokenEndpoint                 string   `json:"token_endpoint"`
		CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	}
	if json.Unmarshal(b, &c) != nil || c.TokenEndpoint == "" || strings.Join(c.CodeChallengeMethodsSupported, ",") != "S256" {
		t.Errorf("not a SMART configuration with S256 only: %.300s", b)
	}
}

type bundle struct {
	ResourceType string
	Entry        []struct {
		Resource json.RawMessage
	}
}

func entries(t *testing.T, b []byte) []map[string]any {
	var bu bundle
	if err := json.Unmarshal(b, &bu); err != nil || bu.ResourceType != "Bundle" {
		t.Helper()
		t.Fatalf("want a Bundle, got %.200s", b)
	}
	var out []map[string]any
	for _, e := range bu.Entry {
		var r map[string]any
		_ = json.Unmarshal(e.Resource, &r)
		out = append(out, r)
	}
	return out
}

// everyEntryOf checks that the search returned something and that every resource names the patient.
func everyEntryOf(patient string) func(*testing.T, []byte) {
	return func(t *testing.T, b []byte) {
		es := entries(t, b)
		if len(es) == 0 {
			t.Fatalf("no entries")
		}
		for _, r := range es {
			if !strings.Contains(mustJSON(r), `"Patient/`+patient+`"`) {
				t.Errorf("%v/%v does not belong to %s", r["resourceType"], r["id"], patient)
			}
		}
	}
}

func everyCategory(code string) func(*testing.T, []byte) {
	return func(t *testing.T, b []byte) {
		es := entries(t, b)
		if len(es) == 0 {
			t.Fatalf("no entries")
		}
		for _, r := range es {
			if !strings.Contains(mustJSON(r["category"]), `"`+code+`"`) {
				t.Errorf("%v outside category %s", r["id"], code)
			}
		}
	}
}

// onlyPatient checks that no resource in the Bundle names any patient but this one.
func onlyPatient(patient string) func(*testing.T, []byte) {
	return func(t *testing.T, b []byte) {
		for _, r := range entries(t, b) {
			body := mustJSON(r)
			for _, ref := range patientRefs.FindAllString(body, -1) {
				if ref != `"Patient/`+patient+`"` && ref != `"id":"`+patient+`"` {
					t.Errorf("%v/%v names %s", r["resourceType"], r["id"], ref)
				}
			}
		}
	}
}

var patientRefs = regexp.MustCompile(`"Patient/member-\d+"`)

func diagnosticsMention(s string) func(*testing.T, []byte) {
	return func(t *testing.T, b []byte) {
		if !strings.Contains(string(b), s) {
			t.Errorf("OperationOutcome does not mention %s: %s", s, b)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestPagingLinksAreBoundToTheSearcher: a next-page link works for the member whose search made it, and is
// the 404 of a page that does not exist for any other member.
func TestPagingLinksAreBoundToTheSearcher(t *testing.T) {
	evidence.Proves(t, "USCORE-02")
	member01 := member01Token(t)
	member02, err := smartclient.AuthorizationCodePKCE(ctx(t), issuer, "patient-app", "http://127.0.0.1:8089/callback",
		[]string{"openid", "launch/patient", "patient/*.rs"}, "member02", "fhirwall-demo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			first := send(t, "GET", m.base+"/ExplanationOfBenefit?_count=2", member01, nil, "")
			var b struct {
				Link []struct{ Relation, URL string }
			}
			if err := json.Unmarshal(first.body, &b); err != nil {
				t.Fatal(err)
			}
			next := ""
			for _, l := range b.Link {
				if l.Relation == "next" {
					next = l.URL
				}
			}
			if !strings.HasPrefix(next, m.base+"?_getpages=") {
				t.Fatalf("no next link on the API's base: %v", b.Link)
			}
			own := send(t, "GET", next, member01, nil, "")
			if own.status != 200 {
				t.Fatalf("own next page: %d %.200s", own.status, own.body)
			}
			onlyPatient("member-01")(t, own.body)
			replay := send(t, "GET", next, member02.AccessToken, nil, "")
			missing := send(t, "GET", m.base+"?_getpages=00000000-0000-0000-0000-000000000000", member02.AccessToken, nil, "")
			if replay.status != 404 || string(replay.body) != string(missing.body) {
				t.Fatalf("another member replaying the link: %d %s (a page that does not exist: %d)", replay.status, replay.body, missing.status)
			}
		})
	}
}
