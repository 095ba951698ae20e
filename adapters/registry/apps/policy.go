package apps

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// Launch types an app may register for (SMART App Launch 2.x: standalone and EHR launch; Backend Services).
const (
	LaunchStandalone = "standalone"
	LaunchEHR        = "ehr"
	LaunchBackend    = "backend"
)

// Token endpoint auth methods (RFC 7591 §2) the registry accepts.
const (
	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// maxClientIDLen bounds a client id: it travels in tokens, logs, metric labels and Keycloak.
const maxClientIDLen = 128

// ValidateRegistration reports every way a registers against the registration policy, joined, each wrapping
// ErrInvalid. offered maps an API's name to the scopes it offers (config apis[].smart.scopes); an API missing
// from it is unknown.
//
// It judges the App only: a public client (token_endpoint_auth_method none) has no secret to check here. A
// Dynamic Client Registration endpoint must itself refuse a request carrying client_secret for a client whose
// method is none (RFC 7591 §3.2.2 invalid_client_metadata) before it builds the App.
//
// Scopes: a requested scope is allowed when one scope offered by one of the requested APIs covers it whole
// (decision.Covers, the gateway's own rule for what a client may hold). A wildcard request such as
// patient/*.rs is therefore allowed only where the API offers a wildcard that covers it: the types it could
// mean are not enumerable, so per-type offers never add up to it. Non-resource scopes (openid, fhirUser,
// launch/patient, offline_access) must be offered verbatim. Approved APIs must be requested ones and every
// approved scope covered by a requested one: a reviewer narrows, never widens.
func ValidateRegistration(a App, offered map[string][]string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}

	if err := validClientID(a.ClientID); err != nil {
		bad("client_id %q: %v", a.ClientID, err)
	}
	if name := strings.TrimSpace(a.Name); name == "" || len(name) > 200 || strings.ContainsAny(a.Name, "\r\n\t") {
		bad("name: want 1-200 characters on one line")
	}
	for i, c := range a.Contacts {
		if err := validEmail(c.Email); err != nil {
			bad("contacts[%d].email %q: %v", i, c.Email, err)
		}
	}
	if len(a.Contacts) == 0 {
		bad("contacts: want at least one contact with an email address")
	}
	for field, u := range map[string]string{"logo_uri": a.LogoURI, "client_uri": a.ClientURI, "policy_uri": a.PolicyURI, "tos_uri": a.TOSURI} {
		if u == "" {
			continue
		}
		if err := validHTTPSURL(u); err != nil {
			bad("%s %q: %v", field, u, err)
		}
	}

	// Launch types and redirect URIs.
	if len(a.LaunchTypes) == 0 {
		bad("launch_types: want at least one of standalone, ehr, backend")
	}
	for _, lt := range a.LaunchTypes {
		if !slices.Contains([]string{LaunchStandalone, LaunchEHR, LaunchBackend}, lt) {
			bad("launch_types: %q is not one of standalone, ehr, backend", lt)
		}
	}
	if hasDuplicates(a.LaunchTypes) {
		bad("launch_types: listed twice")
	}
	backend := slices.Contains(a.LaunchTypes, LaunchBackend)
	interactive := slices.Contains(a.LaunchTypes, LaunchStandalone) || slices.Contains(a.LaunchTypes, LaunchEHR)
	for i, u := range a.RedirectURIs {
		if err := validRedirectURI(u); err != nil {
			bad("redirect_uris[%d] %q: %v", i, u, err)
		}
	}
	if hasDuplicates(a.RedirectURIs) {
		bad("redirect_uris: listed twice")
	}
	if interactive && len(a.RedirectURIs) == 0 {
		bad("redirect_uris: a standalone or EHR launch needs at least one")
	}
	if backend && len(a.RedirectURIs) > 0 {
		// SMART Backend Services: no user, no authorization endpoint, so no redirect.
		bad("redirect_uris: a backend service has none")
	}

	// Client authentication and keys.
	switch a.TokenAuthMethod {
	case AuthNone:
		if a.JWKSURI != "" || len(a.JWKS) > 0 {
			bad("jwks: a public client (token_endpoint_auth_method none) registers no keys")
		}
	case AuthClientSecretBasic, AuthClientSecretPost:
		if a.JWKSURI != "" || len(a.JWKS) > 0 {
			bad("jwks: only with token_endpoint_auth_method private_key_jwt")
		}
	case AuthPrivateKeyJWT:
		errs = append(errs, validKeys(a.JWKSURI, a.JWKS)...)
	default:
		bad("token_endpoint_auth_method %q: want none, client_secret_basic, client_secret_post or private_key_jwt", a.TokenAuthMethod)
	}
	if backend && a.TokenAuthMethod != AuthPrivateKeyJWT {
		// SMART Backend Services §Registering: asymmetric client authentication only.
		bad("token_endpoint_auth_method: a backend service uses private_key_jwt")
	}

	// APIs and scopes.
	if len(a.RequestedAPIs) == 0 {
		bad("requested_apis: want at least one")
	}
	for _, api := range a.RequestedAPIs {
		if _, ok := offered[api]; !ok {
			bad("requested_apis: %q is not an API fhirwall serves", api)
		}
	}
	if hasDuplicates(a.RequestedAPIs) {
		bad("requested_apis: listed twice")
	}
	if len(a.RequestedScopes) == 0 {
		bad("requested_scopes: want at least one")
	}
	for _, s := range a.RequestedScopes {
		if !offeredBy(s, a.RequestedAPIs, offered) {
			bad("requested_scopes: %q is not offered by %v", s, a.RequestedAPIs)
		}
	}
	for _, api := range a.ApprovedAPIs {
		if !slices.Contains(a.RequestedAPIs, api) {
			bad("approved_apis: %q was not requested", api)
		}
	}
	for _, s := range a.ApprovedScopes {
		if !slices.ContainsFunc(a.RequestedScopes, func(r string) bool { return decision.Covers(r, s) }) {
			bad("approved_scopes: %q is not covered by a requested scope", s)
		}
	}

	switch a.Environment {
	case Sandbox, Production:
	default:
		bad("environment %q: want sandbox or production", a.Environment)
	}
	switch a.State {
	case "", StatePending, StateApproved, StateActive, StateSuspended, StateDeactivated:
	default:
		bad("state %q: not a lifecycle state", a.State)
	}
	if strings.TrimSpace(a.Tier) == "" {
		bad("tier: want a rate tier")
	}
	// What the gateway itself requires of a client (scopes parse, org is Organization/<id>).
	if err := ToClient(a).Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad("%v", e)
		}
	}
	return errors.Join(errs...)
}

// validClientID: 1-128 characters of RFC 3986 unreserved (letters, digits, - . _ ~), beginning with a letter
// or digit, so that the id is safe unescaped in URLs, logs and Keycloak.
func validClientID(id string) error {
	if id == "" || len(id) > maxClientIDLen {
		return fmt.Errorf("want 1-%d characters", maxClientIDLen)
	}
	for i, c := range id {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("-._~", c)) {
			return errors.New("want letters, digits, '-', '.', '_' or '~', beginning with a letter or digit")
		}
	}
	return nil
}

func validEmail(s string) error {
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" {
		return errors.New("want a bare email address (name@domain)")
	}
	return nil
}

func validHTTPSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return errors.New("want an absolute URL")
	}
	if u.Scheme != "https" {
		return errors.New("want https")
	}
	if u.User != nil {
		return errors.New("no user information")
	}
	return nil
}

// loopbackHosts are where an http redirect URI may point: a native app's own listener (RFC 8252 §7.3, §8.3).
var loopbackHosts = []string{"127.0.0.1", "::1", "localhost"}

// ValidRedirectURI reports why s is not a redirect URI the registry accepts (nil: it is). Dynamic Client
// Registration answers such a URI with its own error code (RFC 7591 §3.2.2 invalid_redirect_uri) before
// ValidateRegistration judges the rest.
func ValidRedirectURI(s string) error { return validRedirectURI(s) }

// validRedirectURI: absolute, no fragment (RFC 6749 §3.1.2), no wildcard (exact matching, OAuth 2.0 Security
// BCP §2.1), https, or http on a loopback host for a native app.
func validRedirectURI(s string) error {
	if strings.Contains(s, "*") {
		return errors.New("no wildcards: redirect URIs are matched exactly")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return errors.New("want an absolute URL")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return errors.New("no fragment")
	}
	if u.User != nil {
		return errors.New("no user information")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if slices.Contains(loopbackHosts, host) {
			return nil
		}
		return errors.New("http only on a loopback host (127.0.0.1, [::1], localhost) for a native app; otherwise https")
	default:
		return errors.New("want https (or http on a loopback host)")
	}
}

// privateJWKMembers are the JWK members that carry private or secret key material (RFC 7518 §6.2.2, §6.3.2,
// §6.4.1; RFC 8037 §2): a registration holding any of them has leaked the key it means to prove possession of.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// validKeys checks private_key_jwt keys: exactly one of jwks_uri (https) and jwks (RFC 7591 §2: MUST NOT
// both be present); an inline set holds at least one public key and nothing private.
func validKeys(jwksURI string, jwks json.RawMessage) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	switch {
	case jwksURI == "" && len(jwks) == 0:
		bad("jwks: private_key_jwt needs jwks_uri or jwks")
		return errs
	case jwksURI != "" && len(jwks) > 0:
		bad("jwks: jwks_uri and jwks must not both be present")
		return errs
	case jwksURI != "":
		if err := validHTTPSURL(jwksURI); err != nil {
			bad("jwks_uri %q: %v", jwksURI, err)
		}
		return errs
	}
	var set struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		bad("jwks: want a JSON Web Key Set {\"keys\": [...]}")
		return errs
	}
	if len(set.Keys) == 0 {
		bad("jwks: want at least one public key")
	}
	for i, k := range set.Keys {
		var kty string
		if raw, ok := k["kty"]; !ok || json.Unmarshal(raw, &kty) != nil || kty == "" {
			bad("jwks.keys[%d]: no kty", i)
		} else if kty == "oct" {
			bad("jwks.keys[%d]: a symmetric key is a secret, not a public key", i)
		}
		for _, m := range privateJWKMembers {
			if _, ok := k[m]; ok {
				bad("jwks.keys[%d]: holds private key material (%q): register the public key only", i, m)
			}
		}
	}
	return errs
}

// offeredBy reports whether one of the apis offers a scope covering s.
func offeredBy(s string, apis []string, offered map[string][]string) bool {
	for _, api := range apis {
		if slices.ContainsFunc(offered[api], func(o string) bool { return decision.Covers(o, s) }) {
			return true
		}
	}
	return false
}

func hasDuplicates(xs []string) bool {
	seen := make(map[string]bool, len(xs))
	for _, x := range xs {
		if seen[x] {
			return true
		}
		seen[x] = true
	}
	return false
}

// unjoin splits an errors.Join result so each problem is reported (and wraps ErrInvalid) on its own.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
