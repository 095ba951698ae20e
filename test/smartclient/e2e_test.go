//go:build e2e

// End-to-end tests against the real Keycloak of the test stack:
//
//	bash test/stack/keycloak.sh start
//	go test -tags e2e ./test/smartclient/
//
// FHIRWALL_KEYCLOAK_ISSUER overrides the issuer (default http://127.0.0.1:8180/realms/fhirwall).
package smartclient

import (
	"context"
	"crypto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

const (
	e2eRedirectURI = "http://127.0.0.1:8089/callback"
	e2ePassword    = "fhirwall-demo"
)

func e2eIssuer() string {
	if s := os.Getenv("FHIRWALL_KEYCLOAK_ISSUER"); s != "" {
		return s
	}
	return "http://127.0.0.1:8180/realms/fhirwall"
}

func e2eCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if _, err := Discover(ctx, e2eIssuer()); err != nil {
		t.Fatalf("Keycloak not reachable (run bash test/stack/keycloak.sh start): %v", err)
	}
	return ctx
}

func testKey(t *testing.T, client string) (crypto.Signer, string) {
	t.Helper()
	k, err := LoadPrivateKey(filepath.Join("..", "fixtures", "keys", client+".TEST-ONLY.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return k, client + "-test-1"
}

func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	c, err := UnverifiedClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func audience(c map[string]any) []string {
	switch v := c["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func wantScopes(t *testing.T, what, got string, want ...string) {
	t.Helper()
	have := strings.Fields(got)
	for _, w := range want {
		if !slices.Contains(have, w) {
			t.Errorf("%s scope %q lacks %q", what, got, w)
		}
	}
}

func TestE2EPatientAppMember01(t *testing.T) {
	evidence.Proves(t, "CMS-PA-01", "SMART-07")
	ctx := e2eCtx(t)
	scopes := []string{"openid", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/*.rs", "fhirUser"}
	tok, err := AuthorizationCodePKCE(ctx, e2eIssuer(), "patient-app", e2eRedirectURI, scopes, "member01", e2ePassword)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Patient != "member-01" {
		t.Errorf("token response patient = %q, want member-01", tok.Patient)
	}
	if tok.IDToken == "" {
		t.Error("no id_token")
	}
	if tok.ExpiresIn <= 0 || tok.ExpiresIn > 600 {
		t.Errorf("expires_in = %d, want a few minutes", tok.ExpiresIn)
	}
	wantScopes(t, "token response", tok.Scope, scopes...)

	c := claims(t, tok.AccessToken)
	t.Logf("access token claims: %v", c)
	if c["iss"] != e2eIssuer() {
		t.Errorf("iss = %v", c["iss"])
	}
	if c["patient"] != "member-01" {
		t.Errorf("patient = %v, want member-01", c["patient"])
	}
	if c["fhirUser"] != "Patient/member-01" {
		t.Errorf("fhirUser = %v, want Patient/member-01", c["fhirUser"])
	}
	if !slices.Contains(audience(c), "fhirwall") {
		t.Errorf("aud = %v, want fhirwall in it", c["aud"])
	}
	if s, _ := c["sub"].(string); s == "" {
		t.Error("no sub")
	}
	if c["azp"] != "patient-app" {
		t.Errorf("azp = %v, want patient-app", c["azp"])
	}
	scope, _ := c["scope"].(string)
	wantScopes(t, "access token", scope, "openid", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/*.rs", "fhirUser")
	if strings.Contains(scope, "system/") || strings.Contains(scope, "user/") {
		t.Errorf("access token scope %q has scopes that were not asked for", scope)
	}

	id := claims(t, tok.IDToken)
	if id["fhirUser"] != "Patient/member-01" {
		t.Errorf("id_token fhirUser = %v", id["fhirUser"])
	}
}

func TestE2EPatientAppWithoutLaunchPatientHasNoPatient(t *testing.T) {
	evidence.Proves(t, "SMART-07")
	ctx := e2eCtx(t)
	tok, err := AuthorizationCodePKCE(ctx, e2eIssuer(), "patient-app", e2eRedirectURI,
		[]string{"openid", "patient/Coverage.rs"}, "member02", e2ePassword)
	if err != nil {
		t.Fatal(err)
	}
	c := claims(t, tok.AccessToken)
	if _, ok := c["patient"]; ok || tok.Patient != "" {
		t.Errorf("patient context without launch/patient: claim %v, response %q", c["patient"], tok.Patient)
	}
	if !slices.Contains(audience(c), "fhirwall") {
		t.Errorf("aud = %v", c["aud"])
	}
}

func TestE2EOfflineAccess(t *testing.T) {
	evidence.Proves(t, "SMART-08")
	ctx := e2eCtx(t)
	tok, err := AuthorizationCodePKCE(ctx, e2eIssuer(), "patient-app", e2eRedirectURI,
		[]string{"openid", "launch/patient", "patient/*.rs", "offline_access"}, "member05", e2ePassword)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	// Keycloak's refresh tokens are signed JWTs; typ tells an offline token from a session one.
	if c := claims(t, tok.RefreshToken); c["typ"] != "Offline" {
		t.Errorf("refresh token typ = %v, want Offline", c["typ"])
	}
	if tok.Patient != "member-05" {
		t.Errorf("patient = %q", tok.Patient)
	}
}

func TestE2EWrongPassword(t *testing.T) {
	ctx := e2eCtx(t)
	_, err := AuthorizationCodePKCE(ctx, e2eIssuer(), "patient-app", e2eRedirectURI,
		[]string{"openid", "launch/patient"}, "member03", "wrong-password")
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	t.Logf("expected error: %v", err)
}

func TestE2EUnassignedScopeRefused(t *testing.T) {
	evidence.Proves(t, "SMART-05")
	ctx := e2eCtx(t)
	_, err := AuthorizationCodePKCE(ctx, e2eIssuer(), "patient-app", e2eRedirectURI,
		[]string{"openid", "system/*.rs"}, "member04", e2ePassword)
	if err == nil {
		t.Fatal("patient-app got system/*.rs")
	}
	t.Logf("expected error: %v", err)
}

func TestE2EPractitionerUserLevel(t *testing.T) {
	evidence.Proves(t, "SMART-07")
	ctx := e2eCtx(t)
	tok, err := AuthorizationCodePKCE(ctx, e2eIssuer(), "provider-app", e2eRedirectURI,
		[]string{"openid", "fhirUser", "user/*.rs"}, "dr-smith", e2ePassword)
	if err != nil {
		t.Fatal(err)
	}
	c := claims(t, tok.AccessToken)
	if c["fhirUser"] != "Practitioner/pract-01" {
		t.Errorf("fhirUser = %v", c["fhirUser"])
	}
	if _, ok := c["patient"]; ok {
		t.Errorf("practitioner token has patient %v", c["patient"])
	}
	scope, _ := c["scope"].(string)
	wantScopes(t, "access token", scope, "user/*.rs", "fhirUser")
}

func TestE2EBackendServices(t *testing.T) {
	evidence.Proves(t, "BACKEND-01")
	ctx := e2eCtx(t)
	for _, tc := range []struct{ client, org string }{
		{"provider-org-a", "Organization/org-a"},
		{"provider-org-b", "Organization/org-b"},
		{"payer-b", "Organization/payer-b"},
	} {
		t.Run(tc.client, func(t *testing.T) {
			key, kid := testKey(t, tc.client)
			tok, err := BackendServiceToken(ctx, e2eIssuer(), tc.client, key, kid, []string{"system/*.rs"})
			if err != nil {
				t.Fatal(err)
			}
			wantScopes(t, "token response", tok.Scope, "system/*.rs")
			if tok.ExpiresIn <= 0 || tok.ExpiresIn > 600 {
				t.Errorf("expires_in = %d, want a few minutes", tok.ExpiresIn)
			}
			c := claims(t, tok.AccessToken)
			t.Logf("access token claims: %v", c)
			if c["azp"] != tc.client {
				t.Errorf("azp = %v", c["azp"])
			}
			if c["fhirwall_org"] != tc.org {
				t.Errorf("fhirwall_org = %v, want %s", c["fhirwall_org"], tc.org)
			}
			if !slices.Contains(audience(c), "fhirwall") {
				t.Errorf("aud = %v", c["aud"])
			}
			if s, _ := c["sub"].(string); s == "" {
				t.Error("no sub")
			}
			scope, _ := c["scope"].(string)
			wantScopes(t, "access token", scope, "system/*.rs")
			if strings.Contains(scope, "patient/") || c["patient"] != nil {
				t.Errorf("backend token has patient context: scope %q patient %v", scope, c["patient"])
			}
			if tok.RefreshToken != "" {
				t.Error("client_credentials returned a refresh token")
			}
		})
	}
}

func TestE2EBackendServicesWrongKeyRefused(t *testing.T) {
	evidence.Proves(t, "BACKEND-02")
	ctx := e2eCtx(t)
	key, _ := testKey(t, "provider-org-b")
	// org-b's key under org-a's kid, then under its own kid: both must fail for provider-org-a.
	for _, kid := range []string{"provider-org-a-test-1", "provider-org-b-test-1"} {
		if _, err := BackendServiceToken(ctx, e2eIssuer(), "provider-org-a", key, kid, []string{"system/*.rs"}); err == nil {
			t.Errorf("provider-org-a accepted an assertion signed with provider-org-b's key (kid %s)", kid)
		} else {
			t.Logf("expected error: %v", err)
		}
	}
}
