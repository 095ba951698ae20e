package keycloak

import (
	"encoding/json"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// A client the registry creates has no Resource Owner Password Credentials grant and no implicit flow
// (OAuth 2.0 Security BCP §2.4, §2.1.2: MUST NOT): Keycloak switches the password grant on for a client
// created without saying, and an anonymous DCR registrant would then trade any member's password for a
// token, with no browser, no PKCE and no redirect URI. Both are sent, false, on creation.
func TestCreatedClientsHaveNoPasswordGrantOrImplicitFlow(t *testing.T) {
	jwks := []byte(`{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}`)
	for name, a := range map[string]apps.App{
		"public":       {ClientID: "dcr-pub", State: apps.StateActive, TokenAuthMethod: apps.AuthNone, LaunchTypes: []string{apps.LaunchStandalone}},
		"confidential": {ClientID: "app-conf", State: apps.StateActive, TokenAuthMethod: apps.AuthClientSecretBasic, LaunchTypes: []string{apps.LaunchStandalone}},
		"backend":      {ClientID: "dcr-back", State: apps.StateActive, TokenAuthMethod: apps.AuthPrivateKeyJWT, JWKS: jwks, LaunchTypes: []string{apps.LaunchBackend}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(Desired(a, nil, ""))
			if err != nil {
				t.Fatal(err)
			}
			var rep map[string]any
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"directAccessGrantsEnabled", "implicitFlowEnabled", "fullScopeAllowed"} {
				if v, ok := rep[field]; !ok || v != false {
					t.Errorf("%s: %v (sent: %v), want false, sent", field, v, ok)
				}
			}
		})
	}
}
