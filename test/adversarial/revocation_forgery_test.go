//go:build e2e

package adversarial

// RFC 7009 revocation on the portal listener (POST /oauth/revoke), attacked by a client that holds another
// client's token: it may not revoke it (the token keeps working in both modes), whatever it smuggles in the
// form or the headers, and the answers reveal nothing a token holder could not learn from the API itself.

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const portalRevoke = "https://127.0.0.1:9443/oauth/revoke"

func revokeCall(t *testing.T, form url.Values, header map[string]string) (int, string) {
	t.Helper()
	hc, err := stackenv.Client(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, portalRevoke, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Skipf("the portal listener does not answer (%v): it is not wired in this stack", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAnotherClientCannotRevokeAToken(t *testing.T) {
	evidence.Proves(t, "CMS-PA-06")
	tok, err := stackauth.Member(testContext(t), "member02", "openid", "fhirUser", "launch/patient", "patient/Patient.rs")
	if err != nil {
		t.Fatal(err)
	}
	victim := tok.AccessToken
	own := get("/Patient/" + tok.Patient)
	works := func(when string) {
		t.Helper()
		for _, m := range modes() {
			a, err := send(testContext(t), m, patientAccess, victim, own)
			if err != nil {
				t.Fatal(err)
			}
			if a.status != http.StatusOK {
				t.Fatalf("%s: member02's token no longer works: %s", when, a)
			}
		}
	}
	works("before")
	for _, c := range []struct {
		name   string
		form   url.Values
		header map[string]string
	}{
		{"another public client by client_id", url.Values{"token": {victim}, "client_id": {"provider-app"}}, nil},
		{"another client, hint access_token", url.Values{"token": {victim}, "client_id": {"provider-app"}, "token_type_hint": {"access_token"}}, nil},
		{"a client that does not exist", url.Values{"token": {victim}, "client_id": {"h8-nobody"}}, nil},
		{"forwarded-for and host headers", url.Values{"token": {victim}, "client_id": {"provider-app"}},
			map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "127.0.0.1:8180", "Forwarded": "for=127.0.0.1"}},
		{"a confidential backend with a wrong assertion type", url.Values{"token": {victim}, "client_id": {"provider-org-a"}, "client_assertion_type": {"x"}, "client_assertion": {"y"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := revokeCall(t, c.form, c.header)
			t.Logf("%d %s", status, body)
			if status == http.StatusTooManyRequests {
				t.Skip("rate limited")
			}
			if strings.Contains(body, victim) {
				t.Errorf("the answer repeats the token")
			}
			works(c.name)
		})
	}
}
