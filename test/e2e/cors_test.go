//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// demoOrigin is the browser app config/fhirwall.yaml admits to Patient Access data.
const demoOrigin = "http://127.0.0.1:9300"

func sendCORS(t *testing.T, method, url string, h http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestBrowserPreflightIsAnsweredWithoutTokenInBothModes(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			before := upstreamRequests(t)
			for _, tc := range []struct {
				path, origin string
				admitted     bool
			}{
				{"/ExplanationOfBenefit?patient=member-01", demoOrigin, true},
				{"/ExplanationOfBenefit?patient=member-01", "https://evil.example", false},
				{"/metadata", "https://any-app.example", true},
				{"/.well-known/smart-configuration", "https://any-app.example", true},
			} {
				resp, _ := sendCORS(t, http.MethodOptions, m.base+tc.path, http.Header{
					"Origin": {tc.origin}, "Access-Control-Request-Method": {"GET"},
					"Access-Control-Request-Headers": {"authorization,accept"}})
				acao := resp.Header.Get("Access-Control-Allow-Origin")
				if resp.StatusCode != 200 && resp.StatusCode != 204 {
					t.Fatalf("%s from %s: preflight got %d, want 200/204 without a token", tc.path, tc.origin, resp.StatusCode)
				}
				if tc.admitted != (acao == tc.origin) || (!tc.admitted && acao != "") {
					t.Fatalf("%s from %s: Access-Control-Allow-Origin %q", tc.path, tc.origin, acao)
				}
				if tc.admitted {
					if ah := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(ah, "authorization") || !strings.Contains(ah, "prefer") {
						t.Fatalf("%s: Access-Control-Allow-Headers %q", tc.path, ah)
					}
					if !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") {
						t.Fatalf("%s: Access-Control-Allow-Methods %q", tc.path, resp.Header.Get("Access-Control-Allow-Methods"))
					}
				}
				if resp.Header.Get("Access-Control-Allow-Credentials") == "true" || acao == "*" {
					t.Fatalf("%s: %v", tc.path, resp.Header)
				}
			}
			if after := upstreamRequests(t); after != before {
				t.Fatalf("preflights reached HAPI: %d requests", after-before)
			}
		})
	}
}

func TestBrowserAppReadsItsMemberAcrossOriginsInBothModes(t *testing.T) {
	evidence.Proves(t, "CMS-PA-01")
	tok := member01Token(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := http.Header{"Origin": {demoOrigin}, "Authorization": {"Bearer " + tok}, "Accept": {"application/fhir+json"}}
			resp, body := sendCORS(t, http.MethodGet, m.base+"/ExplanationOfBenefit?patient=member-01", h)
			if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != demoOrigin {
				t.Fatalf("got %d ACAO %q: %s", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), body)
			}
			if !slices.ContainsFunc(resp.Header.Values("Vary"), func(v string) bool { return strings.Contains(v, "Origin") }) {
				t.Fatalf("no Vary: Origin in %v", resp.Header)
			}
			for _, name := range []string{"WWW-Authenticate", "X-Request-Id", "Retry-After", "Location", "ETag"} {
				if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), name) {
					t.Fatalf("%s not exposed: %q", name, resp.Header.Get("Access-Control-Expose-Headers"))
				}
			}
			h.Set("Origin", "https://evil.example")
			if resp, _ := sendCORS(t, http.MethodGet, m.base+"/ExplanationOfBenefit?patient=member-01", h); resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("a foreign origin may read the answer: %v", resp.Header)
			}
		})
	}
}

func TestRefusalsCarryRFC6750ChallengesInBothModes(t *testing.T) {
	evidence.Proves(t, "SMART-04")
	tok := member01Token(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, path, auth string
				status           int
				challenge        string
			}{
				{"no token", "/ExplanationOfBenefit", "", 401, `Bearer realm="fhirwall"`},
				{"refused token", "/ExplanationOfBenefit", "Bearer not.a.token", 401, `Bearer realm="fhirwall", error="invalid_token"`},
				// patient-app asked for Patient and ExplanationOfBenefit only.
				{"scope the token lacks", "/Coverage?patient=member-01", "Bearer " + tok, 403,
					`Bearer realm="fhirwall", error="insufficient_scope", scope="patient/Coverage.rs"`},
			} {
				h := http.Header{"Accept": {"application/fhir+json"}, "Origin": {demoOrigin}}
				if tc.auth != "" {
					h.Set("Authorization", tc.auth)
				}
				resp, body := sendCORS(t, http.MethodGet, m.base+tc.path, h)
				if resp.StatusCode != tc.status || resp.Header.Get("WWW-Authenticate") != tc.challenge {
					t.Fatalf("%s: got %d %q, want %d %q: %s", tc.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.status, tc.challenge, body)
				}
				if !strings.HasPrefix(string(body), `{"resourceType":"OperationOutcome",`) {
					t.Fatalf("%s: body %s", tc.name, body)
				}
				if resp.Header.Get("Access-Control-Allow-Origin") != demoOrigin {
					t.Fatalf("%s: the app cannot read its refusal (no ACAO): %v", tc.name, resp.Header)
				}
			}
		})
	}
}

func TestEnvoysOwnRepliesAreCompactOperationOutcomesLikeTheProxys(t *testing.T) {
	resp, body := sendCORS(t, http.MethodGet, strings.TrimSuffix(modes[0].base, "/patient-access/fhir")+"/no-api-here/metadata", http.Header{})
	want := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"resource not found"}]}`
	if resp.StatusCode != 404 || string(body) != want {
		t.Fatalf("got %d %s, want %s", resp.StatusCode, body, want)
	}
}
