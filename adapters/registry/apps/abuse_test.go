package apps

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// offeredBoth offers user-facing and backend scopes on one API, so that only the launch decides.
var offeredBoth = map[string][]string{
	"patient-access":  {"openid", "fhirUser", "launch/patient", "patient/*.rs"},
	"provider-access": {"openid", "fhirUser", "user/*.rs", "system/*.rs"},
}

func userFacing(f func(*App)) App {
	a := validPatientApp()
	a.RequestedAPIs, a.ApprovedAPIs, a.ApprovedScopes = []string{"patient-access", "provider-access"}, nil, nil
	f(&a)
	return a
}

func backendService(f func(*App)) App {
	a := validBackendApp()
	a.RequestedAPIs, a.RequestedScopes = []string{"provider-access"}, []string{"system/*.rs"}
	f(&a)
	return a
}

// What the attack review found an anonymous DCR registrant or a portal developer could abuse is refused by
// the one policy, whoever registers: each case breaks one rule only (the valid apps below pass).
func TestRegistrationPolicyRefusesWhatARegistrantCouldAbuse(t *testing.T) {
	for _, a := range []App{userFacing(func(*App) {}), backendService(func(*App) {})} {
		if err := ValidateRegistration(a, offeredBoth); err != nil {
			t.Fatalf("the base app is refused: %v", err)
		}
	}
	jwksURI := func(u string) App { return backendService(func(a *App) { a.JWKS, a.JWKSURI = nil, u }) }
	for _, c := range []struct {
		name  string
		app   App
		field Field
		want  string
	}{
		// SMART App Launch 2.2 §Scopes, Backend Services §Scopes: system/ scopes act for no user.
		{"system scope on a public standalone app", userFacing(func(a *App) { a.RequestedScopes = []string{"openid", "system/*.rs"} }), FieldRequestedScopes, "backend service"},
		{"system scope beside patient scopes", userFacing(func(a *App) { a.RequestedScopes = []string{"patient/*.rs", "system/*.rs"} }), FieldRequestedScopes, "system/*.rs"},
		{"system scope on an EHR launch", userFacing(func(a *App) { a.LaunchTypes, a.RequestedScopes = []string{LaunchEHR}, []string{"system/*.rs"} }), FieldRequestedScopes, "backend"},
		{"user scope on a backend service", backendService(func(a *App) { a.RequestedScopes = []string{"user/*.rs"} }), FieldRequestedScopes, "acts for no user"},
		{"patient scope beside system scopes on a backend", backendService(func(a *App) {
			a.RequestedAPIs, a.RequestedScopes = []string{"patient-access", "provider-access"}, []string{"system/*.rs", "patient/*.rs"}
		}), FieldRequestedScopes, "patient/*.rs"},
		// Keycloak fetches a private_key_jwt client's jwks_uri: not from the servers' own network (blind SSRF).
		{"jwks_uri on loopback", jwksURI("https://127.0.0.1:9443/admin"), FieldJWKSURI, "loopback"},
		{"jwks_uri on localhost", jwksURI("https://localhost/keys"), FieldJWKSURI, "own host"},
		{"jwks_uri on a localhost subdomain", jwksURI("https://keys.LOCALHOST./k"), FieldJWKSURI, "own host"},
		{"jwks_uri on the metadata service", jwksURI("https://169.254.169.254/latest/meta-data"), FieldJWKSURI, "link-local"},
		{"jwks_uri on a private address", jwksURI("https://10.0.0.7/keys"), FieldJWKSURI, "private"},
		{"jwks_uri on shared address space", jwksURI("https://100.100.100.200/latest"), FieldJWKSURI, "private"},
		{"jwks_uri on the unspecified address", jwksURI("https://0.0.0.0/keys"), FieldJWKSURI, "jwks_uri"},
		{"jwks_uri on an IPv6 loopback", jwksURI("https://[::1]/keys"), FieldJWKSURI, "loopback"},
		{"jwks_uri on an IPv4-mapped loopback", jwksURI("https://[::ffff:127.0.0.1]/keys"), FieldJWKSURI, "loopback"},
		{"jwks_uri on loopback through NAT64", jwksURI("https://[64:ff9b::7f00:1]/keys"), FieldJWKSURI, "loopback"},
		{"jwks_uri on a zoned link-local address", jwksURI("https://[fe80::1%25eth0]/keys"), FieldJWKSURI, "link-local"},
		{"jwks_uri on a unique local address", jwksURI("https://[fd00::7]/keys"), FieldJWKSURI, "private"},
		{"jwks_uri on a decimal address", jwksURI("https://2130706433/keys"), FieldJWKSURI, "numeric"},
		{"jwks_uri on a short address", jwksURI("https://127.1/keys"), FieldJWKSURI, "numeric"},
		{"jwks_uri on a hex address", jwksURI("https://0x7f.1/keys"), FieldJWKSURI, "numeric"},
		// A Unicode host reads as another (Cyrillic "ехаmple.com" is not example.com); its A-label is registered.
		{"redirect with a Unicode IDN host", userFacing(func(a *App) { a.RedirectURIs = []string{"https://\u0435\u0445\u0430mple.com/cb"} }), FieldRedirectURIs, "A-label"},
		{"redirect with a percent-encoded Unicode host", userFacing(func(a *App) { a.RedirectURIs = []string{"https://%D0%B5xample.com/cb"} }), FieldRedirectURIs, "A-label"},
		{"logo_uri with a Unicode IDN host", userFacing(func(a *App) { a.LogoURI = "https://\u0435\u0445\u0430mple.com/logo.png" }), FieldLogoURI, "A-label"},
		{"jwks_uri with a Unicode IDN host", jwksURI("https://\u0435\u0445\u0430mple.com/jwks"), FieldJWKSURI, "A-label"},
		// Bidirectional and control characters make a value read as another (reviewer console, consent page, logs).
		{"name with a right-to-left override", userFacing(func(a *App) { a.Name = "Wallet \u202eppa lanruoJ" }), FieldName, "bidirectional"},
		{"name with a bidi isolate", userFacing(func(a *App) { a.Name = "Wallet \u2067x\u2069" }), FieldName, "bidirectional"},
		{"name with a C1 control", userFacing(func(a *App) { a.Name = "Wallet \u0085x" }), FieldName, "control"},
		{"organisation with a bidi isolate", userFacing(func(a *App) { a.DeveloperOrg = "Labs \u2067x\u2069" }), FieldDeveloperOrg, "bidirectional"},
		{"contact name with an override", userFacing(func(a *App) { a.Contacts[0].Name = "Bob \u202e" }), FieldContacts, "bidirectional"},
		{"software_id with a line break", userFacing(func(a *App) { a.SoftwareID = "w\nlevel=ERROR" }), FieldSoftwareID, "control"},
		{"redirect path with an override", userFacing(func(a *App) { a.RedirectURIs = []string{"https://app.example/\u202ebc"} }), FieldRedirectURIs, "bidirectional"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateRegistration(c.app, offeredBoth)
			if err == nil {
				t.Fatal("accepted")
			}
			ps := Problems(err)
			if len(ps) != 1 {
				t.Fatalf("%d problems, want exactly the one rule's: %v", len(ps), err)
			}
			if p := ps[0]; p.Field != c.field || !errors.Is(p, ErrInvalid) || !strings.Contains(p.Detail, c.want) {
				t.Errorf("problem %+v, want field %s mentioning %q (wrapping ErrInvalid)", p, c.field, c.want)
			}
		})
	}
}

func TestRegistrationPolicyAcceptsPublicHostsAndALabels(t *testing.T) {
	for name, a := range map[string]App{
		"A-label redirect":               userFacing(func(a *App) { a.RedirectURIs = []string{"https://xn--mple-43dab.com/cb"} }),
		"loopback redirect":              userFacing(func(a *App) { a.RedirectURIs = []string{"http://127.0.0.1:8765/cb"} }),
		"jwks_uri on a DNS name":         backendService(func(a *App) { a.JWKS, a.JWKSURI = nil, "https://keys1.payer-x.example/jwks.json" }),
		"jwks_uri on a public IPv4":      backendService(func(a *App) { a.JWKS, a.JWKSURI = nil, "https://203.0.113.9/jwks" }),
		"jwks_uri on a public IPv6":      backendService(func(a *App) { a.JWKS, a.JWKSURI = nil, "https://[2001:db8::9]/jwks" }),
		"name in another script":         userFacing(func(a *App) { a.Name = "Журнал здоровья" }),
		"name in a right-to-left script": userFacing(func(a *App) { a.Name = "יומן בריאות" }),
		"non-resource scopes on both":    userFacing(func(a *App) { a.RequestedScopes = []string{"openid", "fhirUser", "user/*.rs"} }),
	} {
		if err := ValidateRegistration(a, offeredBoth); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Dynamic Client Registration answers a redirect URI's own problem with invalid_redirect_uri (RFC 7591 §3.2.2)
// and everything else with invalid_client_metadata: the Problem says which, by its field and index.
func TestProblemsSayWhichAreOneRedirectURIs(t *testing.T) {
	a := userFacing(func(a *App) {
		a.RedirectURIs = []string{"https://ok.example/cb", "http://evil.example/cb", "https://\u0435xample.com/cb"}
		a.Tier = ""
	})
	var redirects []int
	others := 0
	for _, p := range Problems(ValidateRegistration(a, offeredBoth)) {
		if p.RedirectURI() {
			redirects = append(redirects, p.Index)
		} else {
			others++
		}
	}
	if len(redirects) != 2 || redirects[0] != 1 || redirects[1] != 2 || others != 1 {
		t.Errorf("redirect URI problems at %v and %d others, want [1 2] and 1 (tier)", redirects, others)
	}
	none := userFacing(func(a *App) { a.RedirectURIs = nil })
	for _, p := range Problems(ValidateRegistration(none, offeredBoth)) {
		if p.RedirectURI() {
			t.Errorf("%q is about the set of redirect URIs, not one URI's value", p.Detail)
		}
	}
	b := backendService(func(a *App) { a.JWKS = json.RawMessage(`{"keys":[]}`) })
	if ps := Problems(ValidateRegistration(b, offeredBoth)); len(ps) != 1 || ps[0].Field != FieldJWKS {
		t.Errorf("problems %+v, want one of field jwks", ps)
	}
	if Problems(nil) != nil {
		t.Error("Problems(nil) is not empty")
	}
}

// A scope asking for several permissions holds nothing its permissions offered one by one do not: prior-auth
// offers user/Claim.c and user/Claim.r, and the demo provider app asks for user/Claim.cr. Types still do not
// add up to a wildcard, and a permission not offered is still refused.
func TestScopeWhosePermissionsAreEachOfferedIsAllowed(t *testing.T) {
	offered := map[string][]string{"prior-auth": {"system/Claim.c", "system/Claim.r", "system/Coverage.rs?status=active"}}
	for scope, want := range map[string]bool{
		"system/Claim.cr":                    true,
		"system/Claim.c":                     true,
		"system/Claim.cru":                   false, // u not offered
		"system/Claim.rs":                    false, // s not offered
		"system/*.cr":                        false, // per-type offers never add up to a wildcard
		"user/Claim.cr":                      false, // another context
		"system/Coverage.rs?status=active":   true,
		"system/Coverage.rs":                 false, // the offer is narrowed by its parameter
		"system/Coverage.read?status=active": true,
	} {
		a := backendService(func(a *App) { a.RequestedAPIs, a.RequestedScopes = []string{"prior-auth"}, []string{scope} })
		if err := ValidateRegistration(a, offered); (err == nil) != want {
			t.Errorf("%s: accepted %v, want %v (%v)", scope, err == nil, want, err)
		}
	}
}
