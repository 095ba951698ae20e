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
	"github.com/fhirwall/fhirwall/internal/smart"
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

// ValidateRegistration reports every way a registers against the registration policy, joined, each a
// *Problem wrapping ErrInvalid (Problems lists them). offered maps an API's name to the scopes it offers
// (config apis[].smart.scopes); an API missing from it is unknown. It is the one policy of every way an app
// is registered or changed: the admin API (and fhirwall apps), Dynamic Client Registration and the portal.
//
// It judges the App only: a public client (token_endpoint_auth_method none) has no secret to check here. A
// Dynamic Client Registration endpoint must itself refuse a request carrying client_secret for a client whose
// method is none (RFC 7591 §3.2.2 invalid_client_metadata) before it builds the App.
//
// Scopes: a requested scope is allowed when one scope offered by one of the requested APIs covers it whole
// (decision.Covers, the gateway's own rule for what a client may hold). A wildcard request such as
// patient/*.rs is therefore allowed only where the API offers a wildcard that covers it: the types it could
// mean are not enumerable, so per-type offers never add up to it. Permissions are: a scope asking for several
// (user/Claim.cr) is allowed when each on its own is covered (user/Claim.c and user/Claim.r offered; the
// gateway grants it nothing more). Non-resource scopes (openid, fhirUser,
// launch/patient, offline_access) must be offered verbatim. A resource scope must suit the launch:
// system/ scopes a backend service's, patient/ and user/ scopes a user-facing app's. Approved APIs must be
// requested ones and every approved scope covered by a requested one: a reviewer narrows, never widens.
//
// What people read must read as what it is: no control or bidirectional formatting characters in any
// registered value, and URL hosts in ASCII (an IDN as its xn-- A-label). A jwks_uri, which Keycloak fetches,
// must not name the servers' own network (localhost, loopback, private, link-local addresses).
func ValidateRegistration(a App, offered map[string][]string) error {
	var errs []error
	badAt := func(field Field, i int, format string, args ...any) {
		errs = append(errs, &Problem{Field: field, Index: i, Detail: fmt.Sprintf(format, args...)})
	}
	bad := func(field Field, format string, args ...any) { badAt(field, -1, format, args...) }
	text := func(field Field, v string) {
		if err := plainText(v); err != nil {
			bad(field, "%s: %v", field, err)
		}
	}

	if err := validClientID(a.ClientID); err != nil {
		bad(FieldClientID, "client_id %q: %v", a.ClientID, err)
	}
	if name := strings.TrimSpace(a.Name); name == "" || len(name) > 200 || strings.ContainsAny(a.Name, "\r\n\t") {
		bad(FieldName, "name: want 1-200 characters on one line")
	} else {
		text(FieldName, a.Name)
	}
	text(FieldDeveloperOrg, a.DeveloperOrg)
	text(FieldSoftwareID, a.SoftwareID)
	text(FieldSoftwareVersion, a.SoftwareVersion)
	for i, c := range a.Contacts {
		if err := validEmail(c.Email); err != nil {
			badAt(FieldContacts, i, "contacts[%d].email %q: %v", i, c.Email, err)
		}
		for what, v := range map[string]string{"email": c.Email, "name": c.Name, "role": c.Role} {
			if err := plainText(v); err != nil {
				badAt(FieldContacts, i, "contacts[%d].%s: %v", i, what, err)
			}
		}
	}
	if len(a.Contacts) == 0 {
		bad(FieldContacts, "contacts: want at least one contact with an email address")
	}
	for _, f := range []struct {
		field Field
		u     string
	}{{FieldLogoURI, a.LogoURI}, {FieldClientURI, a.ClientURI}, {FieldPolicyURI, a.PolicyURI}, {FieldTOSURI, a.TOSURI}} {
		if f.u == "" {
			continue
		}
		if err := validHTTPSURL(f.u); err != nil {
			bad(f.field, "%s %q: %v", f.field, f.u, err)
		}
	}

	// Launch types and redirect URIs.
	if len(a.LaunchTypes) == 0 {
		bad(FieldLaunchTypes, "launch_types: want at least one of standalone, ehr, backend")
	}
	for i, lt := range a.LaunchTypes {
		if !slices.Contains([]string{LaunchStandalone, LaunchEHR, LaunchBackend}, lt) {
			badAt(FieldLaunchTypes, i, "launch_types: %q is not one of standalone, ehr, backend", lt)
		}
	}
	if hasDuplicates(a.LaunchTypes) {
		bad(FieldLaunchTypes, "launch_types: listed twice")
	}
	backend := slices.Contains(a.LaunchTypes, LaunchBackend)
	interactive := slices.Contains(a.LaunchTypes, LaunchStandalone) || slices.Contains(a.LaunchTypes, LaunchEHR)
	for i, u := range a.RedirectURIs {
		if err := validRedirectURI(u); err != nil {
			badAt(FieldRedirectURIs, i, "redirect_uris[%d] %q: %v", i, u, err)
		}
	}
	if hasDuplicates(a.RedirectURIs) {
		bad(FieldRedirectURIs, "redirect_uris: listed twice")
	}
	if interactive && len(a.RedirectURIs) == 0 {
		bad(FieldRedirectURIs, "redirect_uris: a standalone or EHR launch needs at least one")
	}
	if backend && len(a.RedirectURIs) > 0 {
		// SMART Backend Services: no user, no authorization endpoint, so no redirect.
		bad(FieldRedirectURIs, "redirect_uris: a backend service has none")
	}

	// Client authentication and keys.
	switch a.TokenAuthMethod {
	case AuthNone:
		if a.JWKSURI != "" || len(a.JWKS) > 0 {
			bad(FieldJWKS, "jwks: a public client (token_endpoint_auth_method none) registers no keys")
		}
	case AuthClientSecretBasic, AuthClientSecretPost:
		if a.JWKSURI != "" || len(a.JWKS) > 0 {
			bad(FieldJWKS, "jwks: only with token_endpoint_auth_method private_key_jwt")
		}
	case AuthPrivateKeyJWT:
		errs = append(errs, validKeys(a.JWKSURI, a.JWKS)...)
	default:
		bad(FieldTokenAuthMethod, "token_endpoint_auth_method %q: want none, client_secret_basic, client_secret_post or private_key_jwt", a.TokenAuthMethod)
	}
	if backend && a.TokenAuthMethod != AuthPrivateKeyJWT {
		// SMART Backend Services §Registering: asymmetric client authentication only.
		bad(FieldTokenAuthMethod, "token_endpoint_auth_method: a backend service uses private_key_jwt")
	}
	if a.JWKSURI != "" {
		// Whatever the method: Keycloak would fetch it if the method ever became private_key_jwt.
		if err := fetchableHost(a.JWKSURI); err != nil {
			bad(FieldJWKSURI, "jwks_uri %q: %v", a.JWKSURI, err)
		}
	}
	for _, f := range []struct {
		field Field
		u     string
	}{{FieldLogoURI, a.LogoURI}, {FieldClientURI, a.ClientURI}, {FieldPolicyURI, a.PolicyURI}, {FieldTOSURI, a.TOSURI}, {FieldJWKSURI, a.JWKSURI}} {
		if err := errors.Join(plainText(f.u), asciiHost(f.u)); err != nil {
			bad(f.field, "%s %q: %v", f.field, f.u, err)
		}
	}

	// APIs and scopes.
	if len(a.RequestedAPIs) == 0 {
		bad(FieldRequestedAPIs, "requested_apis: want at least one")
	}
	for i, api := range a.RequestedAPIs {
		if _, ok := offered[api]; !ok {
			badAt(FieldRequestedAPIs, i, "requested_apis: %q is not an API fhirwall serves", api)
		}
	}
	if hasDuplicates(a.RequestedAPIs) {
		bad(FieldRequestedAPIs, "requested_apis: listed twice")
	}
	if len(a.RequestedScopes) == 0 {
		bad(FieldRequestedScopes, "requested_scopes: want at least one")
	}
	for i, s := range a.RequestedScopes {
		if !offeredBy(s, a.RequestedAPIs, offered) {
			badAt(FieldRequestedScopes, i, "requested_scopes: %q is not offered by %v", s, a.RequestedAPIs)
		}
		if err := scopeForLaunch(s, backend, interactive); err != nil {
			badAt(FieldRequestedScopes, i, "requested_scopes: %q: %v", s, err)
		}
	}
	for i, api := range a.ApprovedAPIs {
		if !slices.Contains(a.RequestedAPIs, api) {
			badAt(FieldApprovedAPIs, i, "approved_apis: %q was not requested", api)
		}
	}
	for i, s := range a.ApprovedScopes {
		if !slices.ContainsFunc(a.RequestedScopes, func(r string) bool { return decision.Covers(r, s) }) {
			badAt(FieldApprovedScopes, i, "approved_scopes: %q is not covered by a requested scope", s)
		}
	}

	switch a.Environment {
	case Sandbox, Production:
	default:
		bad(FieldEnvironment, "environment %q: want sandbox or production", a.Environment)
	}
	switch a.State {
	case "", StatePending, StateApproved, StateActive, StateSuspended, StateDeactivated:
	default:
		bad(FieldState, "state %q: not a lifecycle state", a.State)
	}
	if strings.TrimSpace(a.Tier) == "" {
		bad(FieldTier, "tier: want a rate tier")
	}
	// What the gateway itself requires of a client (scopes parse, org is Organization/<id>).
	if err := ToClient(a).Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad(FieldClient, "%v", e)
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

// ValidRedirectURI reports why s is not a redirect URI the registry accepts (nil: it is): the rule
// ValidateRegistration applies to each of an app's redirect URIs (its Problems with RedirectURI() true).
func ValidRedirectURI(s string) error { return validRedirectURI(s) }

// validRedirectURI: absolute, no fragment (RFC 6749 §3.1.2), no wildcard (exact matching, OAuth 2.0 Security
// BCP §2.1), https, or http on a loopback host for a native app; plain text with an ASCII host (what the
// reviewer and the member read is the host the browser goes to).
func validRedirectURI(s string) error {
	if err := plainText(s); err != nil {
		return err
	}
	if err := asciiHost(s); err != nil {
		return err
	}
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
		field := FieldJWKS
		if jwksURI != "" && len(jwks) == 0 {
			field = FieldJWKSURI
		}
		errs = append(errs, &Problem{Field: field, Index: -1, Detail: fmt.Sprintf(format, args...)})
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

// offeredBy reports whether the apis offer s: one offered scope covers it whole, or, for a resource scope
// asking for several permissions, each permission on its own is covered (prior-auth offers user/Claim.c and
// user/Claim.r, so user/Claim.cr holds nothing they do not). The context, the type (a wildcard stays one
// that must be offered as a wildcard) and any granular parameters stay as asked.
func offeredBy(s string, apis []string, offered map[string][]string) bool {
	covered := func(scope string) bool {
		for _, api := range apis {
			if slices.ContainsFunc(offered[api], func(o string) bool { return decision.Covers(o, scope) }) {
				return true
			}
		}
		return false
	}
	if covered(s) {
		return true
	}
	sc, err := smart.Parse(s)
	if err != nil {
		return false
	}
	_, query, _ := strings.Cut(s, "?")
	if query != "" {
		query = "?" + query
	}
	n := 0
	for letter, has := range map[string]bool{"c": sc.Permissions.Create, "r": sc.Permissions.Read,
		"u": sc.Permissions.Update, "d": sc.Permissions.Delete, "s": sc.Permissions.Search} {
		if !has {
			continue
		}
		n++
		if !covered(string(sc.Context) + "/" + sc.ResourceType + "." + letter + query) {
			return false
		}
	}
	return n > 1
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
