package revocation

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
)

// FuzzParseRequest: whatever a client sends, parsing never panics, refuses with a 400 or 401 OAuth error,
// or yields a request with a token and an identified client whose forwarded form holds only the known
// parameters, each once.
func FuzzParseRequest(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "Basic YXBwLTE6czNjcmV0", "token=abc&token_type_hint=access_token")
	f.Add("application/x-www-form-urlencoded", "", "token=abc&client_id=app-1&client_secret=x")
	f.Add("application/x-www-form-urlencoded; charset=utf-8", "", "token=abc&client_id=public-app")
	f.Add("application/x-www-form-urlencoded", "", "token=a&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJhIiwic3ViIjoiYSJ9.c2ln")
	f.Add("application/json", "", `{"token":"a"}`)
	f.Add("application/x-www-form-urlencoded", "Basic %%%", "token=a&token=b")
	known := map[string]bool{"token": true, "token_type_hint": true, "client_id": true, "client_secret": true,
		"client_assertion_type": true, "client_assertion": true}
	f.Fuzz(func(t *testing.T, contentType, authorization, body string) {
		var auth []string
		if authorization != "" {
			auth = []string{authorization}
		}
		r, err := parseRequest(contentType, auth, []byte(body))
		if err != nil {
			var oe *oauthError
			if !errors.As(err, &oe) || (oe.status != http.StatusBadRequest && oe.status != http.StatusUnauthorized) {
				t.Fatalf("refusal %v is not a 400/401 OAuth error", err)
			}
			return
		}
		if r.token == "" || r.clientID == "" {
			t.Fatalf("accepted without a token or a client: %+v", r)
		}
		back, perr := url.ParseQuery(r.forwardedFields.Encode())
		if perr != nil {
			t.Fatal(perr)
		}
		for k, vs := range back {
			if !known[k] || len(vs) != 1 {
				t.Fatalf("forwarded %q = %q", k, vs)
			}
		}
		if back.Get("token") != r.token {
			t.Fatalf("forwarded token differs")
		}
	})
}
