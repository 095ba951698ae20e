// Package stackauth gets access tokens from the test stack's Keycloak realm (config/keycloak/fhirwall-realm.json)
// the way each kind of fhirwall client gets them: a member's app (patient-app, code + PKCE through the login
// form), a practitioner's app (provider-app, user/ scopes) and a provider organisation's backend service
// (client_credentials with its test key). Tests ask for exactly the scopes a case needs, so down-scoped
// tokens (patient/Patient.rs only, a granular category) come from the real IdP, never from a forged JWT.
package stackauth

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	// Issuer is the realm's issuer, as fhirwall's config trusts it.
	Issuer = "http://127.0.0.1:8180/realms/fhirwall"
	// Password is every seeded user's password (member01 … member05, dr-smith).
	Password = "fhirwall-demo"
	// RedirectURI is registered for patient-app and provider-app; nothing needs to listen there.
	RedirectURI = "http://127.0.0.1:8089/callback"
)

// Member logs a seeded member (member01 … member05) in through patient-app with these scopes. Add
// "launch/patient" to get the patient context a patient/ scope needs.
func Member(ctx context.Context, username string, scopes ...string) (*smartclient.Token, error) {
	return login(ctx, "patient-app", username, scopes)
}

// Practitioner logs a practitioner (dr-smith is Practitioner/pract-01 at org-a) in through provider-app.
func Practitioner(ctx context.Context, username string, scopes ...string) (*smartclient.Token, error) {
	return login(ctx, "provider-app", username, scopes)
}

// Backend is a SMART Backend Services token of a registered backend client (provider-org-a,
// provider-org-b, payer-b, payer-c), signed with its key in test/fixtures/keys.
func Backend(ctx context.Context, client string, scopes ...string) (*smartclient.Token, error) {
	key, err := smartclient.LoadPrivateKey(filepath.Join(stackenv.Root(), "test", "fixtures", "keys", client+".TEST-ONLY.key.pem"))
	if err != nil {
		return nil, err
	}
	tok, err := smartclient.BackendServiceToken(ctx, Issuer, client, key, client+"-test-1", scopes)
	if err != nil {
		return nil, fmt.Errorf("backend token for %s %v: %w (is the stack up? make stack-up)", client, scopes, err)
	}
	return tok, nil
}

func login(ctx context.Context, client, username string, scopes []string) (*smartclient.Token, error) {
	tok, err := smartclient.AuthorizationCodePKCE(ctx, Issuer, client, RedirectURI, scopes, username, Password)
	if err != nil {
		return nil, fmt.Errorf("login %s through %s %v: %w (is the stack up? make stack-up)", username, client, scopes, err)
	}
	return tok, nil
}
