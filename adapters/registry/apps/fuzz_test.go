package apps

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzValidateRegistration: whatever a registration says (it comes from developers, and later from Dynamic
// Client Registration), the policy answers without panicking, every refusal is ErrInvalid, and lists its
// Problems (Dynamic Client Registration picks its error code from them: one missing would fail open).
func FuzzValidateRegistration(f *testing.F) {
	for _, seed := range []string{
		`{"client_id":"app-1","name":"A","contacts":[{"email":"a@example.org"}],"redirect_uris":["https://app.example.org/cb"],"launch_types":["standalone"],"token_endpoint_auth_method":"none","requested_apis":["patient-access"],"requested_scopes":["patient/*.rs"],"environment":"sandbox","tier":"standard"}`,
		`{"client_id":"svc","name":"S","contacts":[{"email":"s@example.org"}],"launch_types":["backend"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"x"}]},"requested_apis":["prior-auth"],"requested_scopes":["system/Claim.c"],"environment":"production","tier":"backend"}`,
		`{"redirect_uris":["http://10.0.0.1/cb","https://x/#frag","*"],"launch_types":["ehr","other"]}`,
		`{}`,
		`{"name":"W \u202e","redirect_uris":["https://\u0435xample.com/cb"],"launch_types":["standalone"],"requested_scopes":["system/*.rs"],"jwks_uri":"https://[::ffff:127.0.0.1]/k"}`,
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
		err := ValidateRegistration(a, offered)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("a refusal that is not ErrInvalid: %v", err)
		}
		ps := Problems(err)
		if len(ps) != len(unjoin(err)) {
			t.Fatalf("%d Problems in a refusal of %d: %v", len(ps), len(unjoin(err)), err)
		}
	})
}
