package keycloak

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// Client is a Keycloak client representation (ClientRepresentation), the fields the sync reads or owns.
// Anything else a client has is left as Keycloak keeps it: an update starts from the client as read.
type Client struct {
	ID                      string            `json:"id,omitempty"` // Keycloak's internal id
	ClientID                string            `json:"clientId"`
	Name                    string            `json:"name,omitempty"`
	Enabled                 bool              `json:"enabled"`
	Protocol                string            `json:"protocol,omitempty"`
	PublicClient            bool              `json:"publicClient"`
	ClientAuthenticatorType string            `json:"clientAuthenticatorType,omitempty"`
	Secret                  string            `json:"secret,omitempty"`
	StandardFlowEnabled     bool              `json:"standardFlowEnabled"`
	ServiceAccountsEnabled  bool              `json:"serviceAccountsEnabled"`
	RedirectURIs            []string          `json:"redirectUris"`
	WebOrigins              []string          `json:"webOrigins"`
	Attributes              map[string]string `json:"attributes,omitempty"`
	DefaultClientScopes     []string          `json:"defaultClientScopes,omitempty"`
	OptionalClientScopes    []string          `json:"optionalClientScopes,omitempty"`
	ProtocolMappers         []Mapper          `json:"protocolMappers,omitempty"`
	NotBefore               int64             `json:"notBefore,omitempty"`

	// DirectAccessGrantsEnabled and ImplicitFlowEnabled are always false, sent on creation (Keycloak switches
	// the password grant on for a client created without saying): no registry app trades a user's password
	// for a token or gets one in a URL fragment (OAuth 2.0 Security BCP §2.4, §2.1.2). Not owned after that.
	DirectAccessGrantsEnabled bool `json:"directAccessGrantsEnabled"`
	ImplicitFlowEnabled       bool `json:"implicitFlowEnabled"`
	// FullScopeAllowed is false, sent on creation like the two above: an app's tokens carry only the roles
	// its client scopes map (offline_access through the offline_access scope), never the user's other realm
	// roles (a reviewer's fhirwall-reviewer in a third-party app's token), as the realm file's clients.
	FullScopeAllowed bool `json:"fullScopeAllowed"`
}

// Mapper is a protocol mapper (ProtocolMapperRepresentation).
type Mapper struct {
	ID             string            `json:"id,omitempty"`
	Name           string            `json:"name"`
	Protocol       string            `json:"protocol"`
	ProtocolMapper string            `json:"protocolMapper"`
	Config         map[string]string `json:"config"`
}

// Keycloak's own clients in every realm: never the registry's, never touched.
var keycloakClients = []string{"account", "account-console", "admin-cli", "broker", "realm-management", "security-admin-console"}

// DefaultScopes every app's client has: the OIDC basics and the FHIR audience.
var DefaultScopes = []string{"basic", "fhirwall-audience"}

// identityScopes are the realm's client scopes for the user behind a user-facing app (never a backend's).
var identityScopes = []string{"profile", "email"}

// ignoredDefaults are default scopes Keycloak adds by itself (service_account on a client with a service
// account): neither compared nor removed.
var ignoredDefaults = []string{"service_account"}

// ownedAttributes are the client attributes the registry owns; the others are Keycloak's or an operator's.
var ownedAttributes = []string{"pkce.code.challenge.method", "use.jwks.url", "jwks.url", "use.jwks.string", "jwks.string",
	"token.endpoint.auth.signing.alg"}

// OrgMapper is the protocol mapper that puts a backend app's organisation into its tokens (claim
// fhirwall_org, checked by the gateway against the registry's org).
const OrgMapper = "fhirwall_org"

// Desired is the Keycloak client an app should have. realmScopes are the names of the realm's client scopes
// (an app gets only scopes the realm has); secret is a registration's client secret not yet delivered ("" for
// none). A deactivated app should have no client at all (the caller deletes it).
func Desired(a apps.App, realmScopes []string, secret string) Client {
	c := Client{
		ClientID: a.ClientID, Name: a.Name, Protocol: "openid-connect",
		Enabled:      a.State == apps.StateActive,
		RedirectURIs: sorted(a.RedirectURIs), WebOrigins: origins(a.RedirectURIs),
		Attributes: map[string]string{}, DefaultClientScopes: within(DefaultScopes, realmScopes),
	}
	user := slices.Contains(a.LaunchTypes, "standalone") || slices.Contains(a.LaunchTypes, "ehr")
	switch a.TokenAuthMethod {
	case "private_key_jwt":
		c.ClientAuthenticatorType, c.ServiceAccountsEnabled = "client-jwt", true
		user = false
		c.Attributes["token.endpoint.auth.signing.alg"] = signingAlg(a.JWKS)
		if a.JWKSURI != "" {
			c.Attributes["use.jwks.url"], c.Attributes["jwks.url"] = "true", a.JWKSURI
			c.Attributes["use.jwks.string"] = "false"
		} else {
			c.Attributes["use.jwks.url"], c.Attributes["use.jwks.string"] = "false", "true"
			c.Attributes["jwks.string"] = compact(a.JWKS)
		}
	case "client_secret_basic", "client_secret_post":
		c.ClientAuthenticatorType, c.Secret = "client-secret", secret
	default: // none, or an imported app that never said: a public client, which holds no secret
		c.PublicClient = true
	}
	c.StandardFlowEnabled = user
	if slices.Contains(a.LaunchTypes, "backend") {
		c.ServiceAccountsEnabled = true
	}
	if user {
		// SMART App Launch 2.x requires PKCE S256 of every app that signs users in.
		c.Attributes["pkce.code.challenge.method"] = "S256"
	}
	c.OptionalClientScopes = optionalScopes(a, realmScopes, user)
	if a.ProviderOrg != "" {
		c.ProtocolMappers = []Mapper{orgMapper(a.ProviderOrg)}
	}
	return c
}

// optionalScopes are the realm's client scopes the app may hold (decision.Client.FilterScopes on its
// approved scopes): those its approved patterns cover and, for an app that signs users in, the identity and
// context scopes (decision.AlwaysAllowedScopes, profile, email) — launch/patient only for an app with a
// patient scope, since it means nothing to the others.
func optionalScopes(a apps.App, realmScopes []string, user bool) []string {
	cl := apps.ToClient(a)
	patient := slices.ContainsFunc(cl.Scopes, func(s string) bool { return strings.HasPrefix(s, "patient/") })
	var out []string
	for _, n := range realmScopes {
		if slices.Contains(DefaultScopes, n) {
			continue
		}
		always := slices.Contains(decision.AlwaysAllowedScopes, n) || slices.Contains(identityScopes, n)
		switch {
		case always && user && (n != "launch/patient" || patient):
		case slices.ContainsFunc(cl.Scopes, func(p string) bool { return decision.Covers(p, n) }):
		default:
			continue
		}
		out = append(out, n)
	}
	return sorted(out)
}

func orgMapper(org string) Mapper {
	return Mapper{Name: OrgMapper, Protocol: "openid-connect", ProtocolMapper: "oidc-hardcoded-claim-mapper",
		Config: map[string]string{"claim.name": "fhirwall_org", "claim.value": org, "jsonType.label": "String",
			"access.token.claim": "true", "introspection.token.claim": "true", "id.token.claim": "false",
			"userinfo.token.claim": "false", "access.tokenResponse.claim": "false"}}
}

// signingAlg is the algorithm private_key_jwt assertions are signed with: ES384 when the app's keys are EC
// P-384 (or say ES384), RS384 otherwise (SMART Backend Services: RS384 or ES384).
func signingAlg(jwks json.RawMessage) string {
	type jwk struct{ Kty, Alg, Crv string }
	var set struct{ Keys []jwk }
	if json.Unmarshal(jwks, &set) != nil || len(set.Keys) == 0 {
		return "RS384"
	}
	ec := slices.ContainsFunc(set.Keys, func(k jwk) bool { return k.Alg == "ES384" || (k.Alg == "" && k.Kty == "EC" && k.Crv == "P-384") })
	rsa := slices.ContainsFunc(set.Keys, func(k jwk) bool { return k.Kty == "RSA" })
	if ec && !rsa {
		return "ES384"
	}
	return "RS384"
}

// Drift names the owned fields in which have differs from want (empty: none).
func Drift(want, have Client) []string {
	var d []string
	add := func(field string, differs bool) {
		if differs {
			d = append(d, field)
		}
	}
	add("enabled", want.Enabled != have.Enabled)
	add("name", want.Name != have.Name)
	add("redirectUris", !slices.Equal(sorted(want.RedirectURIs), sorted(have.RedirectURIs)))
	add("webOrigins", !slices.Equal(sorted(want.WebOrigins), sorted(have.WebOrigins)))
	add("publicClient", want.PublicClient != have.PublicClient)
	add("clientAuthenticatorType", !want.PublicClient && want.ClientAuthenticatorType != have.ClientAuthenticatorType)
	add("standardFlowEnabled", want.StandardFlowEnabled != have.StandardFlowEnabled)
	add("serviceAccountsEnabled", want.ServiceAccountsEnabled != have.ServiceAccountsEnabled)
	for _, k := range ownedAttributes {
		w, h := want.Attributes[k], have.Attributes[k]
		if k == "jwks.string" {
			w, h = compact(json.RawMessage(w)), compact(json.RawMessage(h))
		}
		add("attributes."+k, w != h)
	}
	add("defaultClientScopes", !slices.Equal(sorted(want.DefaultClientScopes), defaults(have.DefaultClientScopes)))
	add("optionalClientScopes", !slices.Equal(sorted(want.OptionalClientScopes), sorted(have.OptionalClientScopes)))
	wm, _ := findMapper(want.ProtocolMappers)
	hm, _ := findMapper(have.ProtocolMappers)
	add("protocolMappers."+OrgMapper, !sameMapper(wm, hm))
	return d
}

func defaults(have []string) []string {
	return sorted(slices.DeleteFunc(slices.Clone(have), func(s string) bool { return slices.Contains(ignoredDefaults, s) }))
}

func findMapper(ms []Mapper) (*Mapper, int) {
	for i := range ms {
		if ms[i].Name == OrgMapper {
			return &ms[i], i
		}
	}
	return nil, -1
}

func sameMapper(a, b *Mapper) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.ProtocolMapper != b.ProtocolMapper {
		return false
	}
	for _, k := range []string{"claim.name", "claim.value", "access.token.claim", "introspection.token.claim", "id.token.claim", "userinfo.token.claim"} {
		if a.Config[k] != b.Config[k] {
			return false
		}
	}
	return true
}

// Adopt is an imported app completed from the Keycloak client that already existed for it: the client's
// name, redirect URIs, authentication method, keys and launch types. The registry owns them from then on.
func Adopt(a apps.App, have Client) apps.App {
	if have.Name != "" {
		a.Name = have.Name
	}
	a.RedirectURIs = slices.Clone(have.RedirectURIs)
	switch {
	case have.PublicClient:
		a.TokenAuthMethod = "none"
	case have.ClientAuthenticatorType == "client-jwt":
		a.TokenAuthMethod = "private_key_jwt"
		if have.Attributes["use.jwks.url"] == "true" {
			a.JWKSURI = have.Attributes["jwks.url"]
		} else if s := have.Attributes["jwks.string"]; s != "" && json.Valid([]byte(s)) {
			a.JWKS = json.RawMessage(compact(json.RawMessage(s)))
		}
	default:
		a.TokenAuthMethod = "client_secret_basic"
	}
	var launch []string
	if have.StandardFlowEnabled {
		launch = append(launch, "standalone")
	}
	if have.ServiceAccountsEnabled {
		launch = append(launch, "backend")
	}
	a.LaunchTypes = launch
	return a
}

// Adoptable reports whether an app is one imported from config/clients.yaml that never said how it signs
// in: its Keycloak client, when there is one, is the truth the first sync adopts.
func Adoptable(a apps.App, imported bool) bool {
	return (a.Owner == "import" || imported) && len(a.RedirectURIs) == 0 && a.TokenAuthMethod == "" &&
		a.JWKSURI == "" && len(a.JWKS) == 0 && len(a.LaunchTypes) == 0
}

// origins are the web origins of redirect URIs (scheme://host[:port]), for CORS on the token endpoint;
// non-web schemes (a native app's) have none.
func origins(uris []string) []string {
	var out []string
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			continue
		}
		o := u.Scheme + "://" + u.Host
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return sorted(out)
}

func within(names, realm []string) []string {
	var out []string
	for _, n := range names {
		if slices.Contains(realm, n) {
			out = append(out, n)
		}
	}
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// compact is JSON without insignificant space ("" for nothing or what does not parse).
func compact(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return ""
	}
	return b.String()
}
