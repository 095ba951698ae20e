//go:build e2e

package smartclient

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// SMART App Launch 2.x: the authorization server refuses a launch whose aud is not a FHIR base it serves
// (config/keycloak/clientauth SmartAudienceExecutor, realm attribute fhirwall.smart.fhirBases), so an app
// tricked into launching against another server never gets a code to spend there.
func TestE2ELaunchIsRefusedUnlessAudIsOurFHIRBase(t *testing.T) {
	evidence.Proves(t, "SMART-08")
	scopes := []string{"openid", "launch/patient", "patient/*.rs"}
	for _, tc := range []struct {
		name string
		aud  string
	}{
		{"attacker's FHIR base", "https://attacker.example/fhir"},
		{"no aud", ""},
		{"our host, not a FHIR base", stackenv.StandaloneURL + "/patient-access"},
		{"our base with a suffix", stackenv.StandaloneURL + "/patient-access/fhir/Patient"},
		{"two trailing slashes", stackenv.StandaloneURL + "/patient-access/fhir//"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := AuthorizationCodePKCE(e2eCtx(t), e2eIssuer(), "patient-app", e2eRedirectURI, scopes,
				"member01", e2ePassword, WithAudience(tc.aud))
			var refused *AuthorizationError
			if !errors.As(err, &refused) || refused.Code != "invalid_request" {
				t.Fatalf("aud %q: got token %v, err %v; want invalid_request on the redirect URI and no code", tc.aud, tok, err)
			}
			if refused.Description == "" {
				t.Error("refusal has no error_description")
			}
		})
	}
}

// The account console (SMART management_endpoint) is no SMART app: it launches with no aud and must still
// reach the login page (realm attribute fhirwall.smart.audExemptClients).
func TestE2EAccountConsoleSignsInWithoutAud(t *testing.T) {
	ctx := e2eCtx(t)
	q := url.Values{"response_type": {"code"}, "client_id": {"account-console"}, "scope": {"openid"},
		"redirect_uri": {strings.TrimSuffix(e2eIssuer(), "/") + "/account/"}, "state": {"s1"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e2eIssuer()+"/protocol/openid-connect/auth?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("account console authorization request: %d (Location %q), want the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestE2ELaunchWithOurFHIRBaseAsAudGetsAWorkingToken(t *testing.T) {
	evidence.Proves(t, "SMART-08")
	scopes := []string{"openid", "launch/patient", "patient/*.rs"}
	for _, aud := range []string{
		stackenv.StandaloneURL + "/patient-access/fhir",
		stackenv.StandaloneURL + "/provider-access/fhir/", // one trailing slash is ignored
		stackenv.EnvoyURL() + "/patient-access/fhir",
		stackenv.EnvoyURL() + "/provider-access/fhir",
	} {
		t.Run(aud, func(t *testing.T) {
			ctx := e2eCtx(t)
			tok, err := AuthorizationCodePKCE(ctx, e2eIssuer(), "patient-app", e2eRedirectURI, scopes,
				"member01", e2ePassword, WithAudience(aud))
			if err != nil {
				t.Fatal(err)
			}
			// The token is spent where the launch said: the patient's own record through fhirwall.
			req, err := http.NewRequestWithContext(ctx, http.MethodGet,
				stackenv.StandaloneURL+"/patient-access/fhir/Patient/"+tok.Patient, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET Patient/%s with the token: %d, want 200", tok.Patient, resp.StatusCode)
			}
		})
	}
}
