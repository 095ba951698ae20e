package keycloak

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// FuzzAdoptedKeysShowNoDrift: whatever a hand-made client's jwks.string holds, adopting it never panics, the
// signing algorithm is one SMART Backend Services allows, and a client adopted from valid JSON keys shows no
// drift in its keys.
func FuzzAdoptedKeysShowNoDrift(f *testing.F) {
	f.Add(`{"keys":[{"kty":"RSA","alg":"RS384","n":"x","e":"AQAB"}]}`)
	f.Add(`{"keys":[{"kty":"EC","crv":"P-384","x":"a","y":"b"}]}`)
	f.Add(`{"keys":[]}`)
	f.Add(`not json`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, jwks string) {
		have := Client{ClientID: "c", Name: "c", Enabled: true, ClientAuthenticatorType: "client-jwt", ServiceAccountsEnabled: true,
			Attributes: map[string]string{"use.jwks.string": "true", "use.jwks.url": "false", "jwks.string": jwks}}
		a := Adopt(apps.App{ClientID: "c", State: apps.StateActive}, have)
		want := Desired(a, nil, "")
		if alg := want.Attributes["token.endpoint.auth.signing.alg"]; alg != "RS384" && alg != "ES384" {
			t.Fatalf("signing alg %q", alg)
		}
		if len(a.JWKS) > 0 && !json.Valid(a.JWKS) {
			t.Fatalf("adopted keys are not JSON: %q", a.JWKS)
		}
		if json.Valid([]byte(jwks)) && slices.Contains(Drift(want, have), "attributes.jwks.string") {
			t.Fatalf("valid keys %q drift after adoption", jwks)
		}
	})
}
