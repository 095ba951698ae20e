package outcome

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestEveryRefusalCarriesTheChallengeAndRetryAfterItNeeds(t *testing.T) {
	for _, tc := range []struct {
		name       string
		r          Refusal
		challenge  string
		retryAfter string
	}{
		{"no token: the plain challenge", Unauthenticated, `Bearer realm="fhirwall"`, ""},
		{"refused token", Unauthenticated.InvalidToken(), `Bearer realm="fhirwall", error="invalid_token"`, ""},
		{"scope refusal names the scope", Forbidden.InsufficientScope("patient/ExplanationOfBenefit.rs"),
			`Bearer realm="fhirwall", error="insufficient_scope", scope="patient/ExplanationOfBenefit.rs"`, ""},
		{"scope refusal without a nameable scope", Forbidden.InsufficientScope(""), `Bearer realm="fhirwall", error="insufficient_scope"`, ""},
		{"a scope that cannot be quoted is left out", Forbidden.InsufficientScope(`a"b`), `Bearer realm="fhirwall", error="insufficient_scope"`, ""},
		{"other 403s carry no challenge", Forbidden, "", ""},
		{"404 carries none", NotFound, "", ""},
		{"503 says when to retry", Unavailable, "", RetryAfterSeconds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.r.Headers()
			if h["www-authenticate"] != tc.challenge || h["retry-after"] != tc.retryAfter {
				t.Fatalf("got challenge %q retry-after %q", h["www-authenticate"], h["retry-after"])
			}
		})
	}
}

func TestBodyIsCompactWithResourceTypeFirst(t *testing.T) {
	for _, r := range []Refusal{NotFound, TooMany, RateLimited, Unavailable, Timeout, Failed, Rejected, Unauthenticated.InvalidToken()} {
		b := string(r.Body())
		if !strings.HasPrefix(b, `{"resourceType":"OperationOutcome","issue":[`) || strings.ContainsAny(b, "\n ") && !json.Valid(r.Body()) {
			t.Fatalf("%d: %s", r.Status, b)
		}
	}
	w := &fakeWriter{h: http.Header{}}
	Unavailable.Write(w)
	if w.h.Get("Retry-After") == "" || w.status != 503 {
		t.Fatalf("Write: %d %v", w.status, w.h)
	}
}

type fakeWriter struct {
	h      http.Header
	status int
}

func (f *fakeWriter) Header() http.Header         { return f.h }
func (f *fakeWriter) WriteHeader(s int)           { f.status = s }
func (f *fakeWriter) Write(p []byte) (int, error) { return len(p), nil }
