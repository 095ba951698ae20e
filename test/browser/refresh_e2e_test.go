//go:build e2e

package browser

import (
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// TestSMARTJSClientRefreshesWithItsDefaults: fhirclient's refresh() as a browser app calls it, with neither
// refreshTokenWithClientId nor a client secret, gets a new access token from Keycloak from the app's origin,
// and the app reads on with it.
//
// fhirclient (lib/Client.js refresh) sends only grant_type and refresh_token by default; stock Keycloak
// identifies even a public client by its client_id parameter and answers invalid_client.
// config/keycloak/clientauth takes a public client from the refresh token's azp (README, "The Keycloak
// realm").
func TestSMARTJSClientRefreshesWithItsDefaults(t *testing.T) {
	evidence.Proves(t, "SMART-08")
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			res := launch(t, m)
			if !res.HasRefreshToken {
				t.Fatalf("no refresh token for scope %q", res.Scope)
			}
			if s, ok := res.Step("refresh"); !ok || !s.OK {
				t.Fatalf("refresh(): %q", s.Error)
			}
			if !res.RefreshedToken {
				t.Error("refresh() kept the old access token")
			}
			if res.AfterRefresh != "Patient/"+m.patient {
				t.Errorf("read with the refreshed token: %q", res.AfterRefresh)
			}
		})
	}
}
