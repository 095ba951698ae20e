package apps

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// offeredForTest is what config/fhirwall.yaml's apis[].smart.scopes offer, cut down.
var offeredForTest = map[string][]string{
	"patient-access": {"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/*.read",
		"patient/Patient.rs", "patient/Observation.rs", "patient/Observation.rs?category=laboratory"},
	"payer-to-payer": {"system/Patient.rs", "system/Coverage.rs"},
}

const publicJWK = `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`

func validPatientApp() App {
	return App{
		ClientID: "my-app", Name: "My App", DeveloperOrg: "Acme",
		Contacts:        []Contact{{Email: "dev@acme.example"}},
		RedirectURIs:    []string{"https://app.acme.example/callback", "http://127.0.0.1:8765/cb"},
		LaunchTypes:     []string{LaunchStandalone},
		TokenAuthMethod: AuthNone,
		RequestedAPIs:   []string{"patient-access"},
		RequestedScopes: []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"},
		ApprovedAPIs:    []string{"patient-access"},
		ApprovedScopes:  []string{"patient/Observation.rs"},
		Environment:     Sandbox, State: StatePending, Tier: "standard",
	}
}

func validBackendApp() App {
	return App{
		ClientID: "payer-x", Name: "Payer X", Contacts: []Contact{{Email: "ops@payer-x.example"}},
		LaunchTypes: []string{LaunchBackend}, TokenAuthMethod: AuthPrivateKeyJWT,
		JWKS:          json.RawMessage(`{"keys":[` + publicJWK + `]}`),
		RequestedAPIs: []string{"payer-to-payer"}, RequestedScopes: []string{"system/Patient.rs", "system/Coverage.r"},
		Environment: Production, Tier: "backend", ProviderOrg: "Organization/payer-x",
	}
}

func TestValidRegistrationsAreAccepted(t *testing.T) {
	for name, a := range map[string]App{"patient app": validPatientApp(), "backend service": validBackendApp()} {
		if err := ValidateRegistration(a, offeredForTest); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	b := validBackendApp()
	b.JWKS, b.JWKSURI = nil, "https://payer-x.example/jwks.json"
	if err := ValidateRegistration(b, offeredForTest); err != nil {
		t.Errorf("backend with jwks_uri: %v", err)
	}
	for _, u := range []string{"http://localhost/cb", "http://[::1]:9000/cb", "https://x.example/cb?state=ok"} {
		a := validPatientApp()
		a.RedirectURIs = []string{u}
		if err := ValidateRegistration(a, offeredForTest); err != nil {
			t.Errorf("redirect %s: %v", u, err)
		}
	}
}

func TestRegistrationPolicyRefusesEachViolation(t *testing.T) {
	patient := func(f func(*App)) App { a := validPatientApp(); f(&a); return a }
	backend := func(f func(*App)) App { a := validBackendApp(); f(&a); return a }
	for _, c := range []struct {
		name string
		app  App
		want string // a part of the message naming the problem
	}{
		{"empty client id", patient(func(a *App) { a.ClientID = "" }), "client_id"},
		{"client id with a space", patient(func(a *App) { a.ClientID = "my app" }), "client_id"},
		{"client id with a slash", patient(func(a *App) { a.ClientID = "a/b" }), "client_id"},
		{"client id starting with a dot", patient(func(a *App) { a.ClientID = ".app" }), "client_id"},
		{"client id too long", patient(func(a *App) { a.ClientID = strings.Repeat("a", 129) }), "client_id"},
		{"no name", patient(func(a *App) { a.Name = "  " }), "name"},
		{"no contact", patient(func(a *App) { a.Contacts = nil }), "contacts"},
		{"contact without email", patient(func(a *App) { a.Contacts = []Contact{{Name: "Bob"}} }), "contacts[0].email"},
		{"contact email with display name", patient(func(a *App) { a.Contacts = []Contact{{Email: "Bob <b@x.example>"}} }), "contacts[0].email"},
		{"http logo", patient(func(a *App) { a.LogoURI = "http://acme.example/logo.png" }), "logo_uri"},
		{"relative redirect", patient(func(a *App) { a.RedirectURIs = []string{"/callback"} }), "redirect_uris[0]"},
		{"http redirect off loopback", patient(func(a *App) { a.RedirectURIs = []string{"http://app.acme.example/cb"} }), "loopback"},
		{"http redirect on a look-alike host", patient(func(a *App) { a.RedirectURIs = []string{"http://127.0.0.1.evil.example/cb"} }), "loopback"},
		{"redirect with fragment", patient(func(a *App) { a.RedirectURIs = []string{"https://app.acme.example/cb#x"} }), "fragment"},
		{"redirect with wildcard", patient(func(a *App) { a.RedirectURIs = []string{"https://*.acme.example/cb"} }), "wildcard"},
		{"redirect with custom scheme", patient(func(a *App) { a.RedirectURIs = []string{"com.acme.app:/cb"} }), "redirect_uris[0]"},
		{"redirect with user info", patient(func(a *App) { a.RedirectURIs = []string{"https://u:p@app.acme.example/cb"} }), "user"},
		{"redirect twice", patient(func(a *App) { a.RedirectURIs = []string{"https://a.example/cb", "https://a.example/cb"} }), "twice"},
		{"standalone without redirect", patient(func(a *App) { a.RedirectURIs = nil }), "at least one"},
		{"no launch type", patient(func(a *App) { a.LaunchTypes = nil }), "launch_types"},
		{"unknown launch type", patient(func(a *App) { a.LaunchTypes = []string{"implicit"} }), "launch_types"},
		{"backend with redirect", backend(func(a *App) { a.RedirectURIs = []string{"https://x.example/cb"} }), "backend service has none"},
		{"backend with a secret", backend(func(a *App) { a.TokenAuthMethod, a.JWKS = AuthClientSecretBasic, nil }), "private_key_jwt"},
		{"backend public", backend(func(a *App) { a.TokenAuthMethod, a.JWKS = AuthNone, nil }), "private_key_jwt"},
		{"private_key_jwt without keys", backend(func(a *App) { a.JWKS = nil }), "needs jwks_uri or jwks"},
		{"both jwks and jwks_uri", backend(func(a *App) { a.JWKSURI = "https://x.example/jwks" }), "both"},
		{"http jwks_uri", backend(func(a *App) { a.JWKS, a.JWKSURI = nil, "http://x.example/jwks" }), "jwks_uri"},
		{"jwks not a set", backend(func(a *App) { a.JWKS = json.RawMessage(publicJWK) }), "at least one public key"},
		{"jwks malformed", backend(func(a *App) { a.JWKS = json.RawMessage(`[1,2]`) }), "JSON Web Key Set"},
		{"jwks empty", backend(func(a *App) { a.JWKS = json.RawMessage(`{"keys":[]}`) }), "at least one public key"},
		{"jwks with private d", backend(func(a *App) {
			a.JWKS = json.RawMessage(`{"keys":[` + strings.TrimSuffix(publicJWK, "}") + `,"d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}`)
		}), `"d"`},
		{"jwks with RSA primes", backend(func(a *App) { a.JWKS = json.RawMessage(`{"keys":[{"kty":"RSA","n":"x","e":"AQAB","p":"x","q":"y"}]}`) }), `"p"`},
		{"jwks symmetric key", backend(func(a *App) { a.JWKS = json.RawMessage(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`) }), "symmetric"},
		{"jwks key without kty", backend(func(a *App) { a.JWKS = json.RawMessage(`{"keys":[{"n":"x"}]}`) }), "kty"},
		{"public client with keys", patient(func(a *App) { a.JWKSURI = "https://x.example/jwks" }), "public client"},
		{"unknown auth method", patient(func(a *App) { a.TokenAuthMethod = "tls_client_auth" }), "token_endpoint_auth_method"},
		{"no API", patient(func(a *App) { a.RequestedAPIs, a.ApprovedAPIs = nil, nil }), "requested_apis"},
		{"unknown API", patient(func(a *App) { a.RequestedAPIs = append(a.RequestedAPIs, "claims-everything") }), "claims-everything"},
		{"no scope", patient(func(a *App) { a.RequestedScopes, a.ApprovedScopes = nil, nil }), "requested_scopes"},
		{"scope the API does not offer", patient(func(a *App) { a.RequestedScopes = append(a.RequestedScopes, "patient/Claim.cruds") }), "patient/Claim.cruds"},
		{"scope another API offers", patient(func(a *App) { a.RequestedScopes = append(a.RequestedScopes, "system/Patient.rs") }), "system/Patient.rs"},
		{"wildcard only per-type offers could cover", backend(func(a *App) { a.RequestedScopes = []string{"system/*.rs"} }), "system/*.rs"},
		{"non-resource scope not offered", backend(func(a *App) { a.RequestedScopes = append(a.RequestedScopes, "openid") }), "openid"},
		{"approved API not requested", patient(func(a *App) { a.ApprovedAPIs = []string{"payer-to-payer"} }), "approved_apis"},
		{"approved scope wider than requested", patient(func(a *App) { a.ApprovedScopes = []string{"patient/*.cruds"} }), "approved_scopes"},
		{"unknown environment", patient(func(a *App) { a.Environment = "staging" }), "environment"},
		{"unknown state", patient(func(a *App) { a.State = "live" }), "state"},
		{"no tier", patient(func(a *App) { a.Tier = "" }), "tier"},
		{"org not an Organization", backend(func(a *App) { a.ProviderOrg = "Practitioner/1" }), "Organization"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateRegistration(c.app, offeredForTest)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v does not mention %q", err, c.want)
			}
		})
	}
}

func TestRegistrationPolicyReportsEveryProblemAtOnce(t *testing.T) {
	a := validPatientApp()
	a.ClientID, a.Tier, a.RedirectURIs = "bad id", "", []string{"http://evil.example/cb#f"}
	err := ValidateRegistration(a, offeredForTest)
	problems := unjoin(err)
	if len(problems) < 3 {
		t.Fatalf("%d problems reported, want at least 3: %v", len(problems), err)
	}
	for _, p := range problems {
		if !errors.Is(p, ErrInvalid) {
			t.Errorf("%v does not wrap ErrInvalid", p)
		}
	}
}

func TestScopeCoveredByAnOfferedPatternIsAllowed(t *testing.T) {
	for _, s := range []string{
		"patient/Observation.rs",                      // offered verbatim
		"patient/Condition.rs",                        // covered by patient/*.rs
		"patient/Encounter.read",                      // v1 read == rs
		"patient/Observation.r",                       // fewer permissions
		"patient/Observation.rs?category=vital-signs", // a granular narrowing of an offered type
		"patient/Observation.rs?category=laboratory",  // offered verbatim
	} {
		a := validPatientApp()
		a.RequestedScopes = []string{s}
		a.ApprovedScopes = nil
		if err := ValidateRegistration(a, offeredForTest); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}
