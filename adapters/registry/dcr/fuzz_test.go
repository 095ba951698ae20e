package dcr

import (
	"reflect"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// FuzzRegistrationMetadata feeds arbitrary bodies to the metadata parser and the registration policy. Nothing
// panics; what is accepted passes the registry's policy whole, and the metadata a client reads back registers
// the very same app again (a client that PUTs what it read changes nothing).
func FuzzRegistrationMetadata(f *testing.F) {
	for _, seed := range []string{
		`{"client_name":"W","redirect_uris":["https://w.example/cb"],"token_endpoint_auth_method":"none","scope":"openid patient/*.rs","contacts":["a@w.example"]}`,
		`{"client_name":"B","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","scope":"system/*.rs","contacts":["a@b.example"],"jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}}`,
		`{"client_name":"E","redirect_uris":["http://127.0.0.1:1/cb"],"grant_types":["authorization_code","refresh_token"],"scope":"launch openid patient/*.rs","contacts":["a@e.example"],"client_secret":"x"}`,
		`{"client_name":"A","client_name":"B"}`,
		`{"redirect_uris":null,"scope":"patient/Observation.rs?category=laboratory"}`,
		`[]`, `{}`, `{"jwks":{"keys":[{"kty":"oct","k":"AA"}]}}`,
	} {
		f.Add([]byte(seed))
	}
	offered := testOffered()
	f.Fuzz(func(t *testing.T, body []byte) {
		app, ok := registerable(body, offered)
		if !ok {
			return
		}
		if err := apps.ValidateRegistration(app, bases(offered)); err != nil {
			t.Fatalf("accepted an app the policy refuses: %v", err)
		}
		again, err := encode(metadataOf(app))
		if err != nil {
			t.Fatal(err)
		}
		round, ok := registerable(again, offered)
		if !ok {
			t.Fatalf("the metadata read back (%s) is refused", again)
		}
		if !reflect.DeepEqual(round, app) {
			t.Fatalf("read back and registered again, the app changed:\n%+v\n%+v", app, round)
		}
	})
}

// registerable runs a body through what POST /register does before the store, software statements aside.
func registerable(body []byte, offered map[string][]string) (apps.App, bool) {
	members, err := parseObject(body)
	if err != nil {
		return apps.App{}, false
	}
	for _, name := range serverMembers {
		if _, ok := members[name]; ok {
			return apps.App{}, false
		}
	}
	delete(members, "software_statement")
	m, r := decodeMetadata(members)
	if r != nil {
		return apps.App{}, false
	}
	offered = bases(offered)
	app, r := m.registrant(offered)
	if r != nil {
		return apps.App{}, false
	}
	app.ClientID, app.Environment, app.State, app.Tier, app.Owner = "dcr-fuzz", apps.Sandbox, apps.StateActive, "standard", Actor
	app.ApprovedAPIs, app.ApprovedScopes = app.RequestedAPIs, app.RequestedScopes
	return app, validate(app, offered) == nil
}
