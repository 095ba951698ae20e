package apps

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzValidateRegistration: whatever a registration says (it comes from developers, and later from Dynamic
// Client Registration), the policy answers without panicking, and every refusal is ErrInvalid.
func FuzzValidateRegistration(f *testing.F) {
	for _, seed := range []string{
		`{"client_id":"app-1","name":"A","contacts":[{"email":"a@example.org"}],"redirect_uris":["https://app.example.org/cb"],"launch_types":["standalone"],"token_endpoint_auth_method":"none","requested_apis":["patient-access"],"requested_scopes":["patient/*.rs"],"environment":"sandbox","tier":"standard"}`,
		`{"client_id":"svc","name":"S","contacts":[{"email":"s@example.org"}],"launch_types":["backend"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"x"}]},"requested_apis":["prior-auth"],"requested_scopes":["system/Claim.c"],"environment":"production","tier":"backend"}`,
		`{"redirect_uris":["http://10.0.0.1/cb","https://x/#frag","*"],"launch_types":["ehr","other"]}`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	offered := map[string][]string{
		"patient-access": {"patient/*.rs", "openid", "fhirUser", "launch/patient"},
		"prior-auth":     {"system/Claim.c", "system/Claim.r"},
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var a App
		if json.Unmarshal(raw, &a) != nil {
			return
		}
		if err := ValidateRegistration(a, offered); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("a refusal that is not ErrInvalid: %v", err)
		}
	})
}
