package dcr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/smart"
)

// Metadata is the client metadata of RFC 7591 §2 that fhirwall registers. Members a request sends that are
// not here are ignored (RFC 7591 §2: the server MUST ignore metadata it does not understand) and do not
// appear in the answer, which shows what was registered.
type Metadata struct {
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string        `json:"grant_types,omitempty"`
	ResponseTypes           []string        `json:"response_types,omitempty"`
	ClientName              string          `json:"client_name,omitempty"`
	ClientURI               string          `json:"client_uri,omitempty"`
	LogoURI                 string          `json:"logo_uri,omitempty"`
	Scope                   string          `json:"scope,omitempty"`
	Contacts                []string        `json:"contacts,omitempty"`
	TOSURI                  string          `json:"tos_uri,omitempty"`
	PolicyURI               string          `json:"policy_uri,omitempty"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	SoftwareID              string          `json:"software_id,omitempty"`
	SoftwareVersion         string          `json:"software_version,omitempty"`
	SoftwareStatement       string          `json:"software_statement,omitempty"`
}

// Grant and response types (RFC 7591 §2.1) fhirwall registers: the authorization code flow of SMART App
// Launch (refresh tokens with it) and the client credentials of SMART Backend Services.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
	responseCode           = "code"
)

// serverMembers are the members of a client information response (RFC 7591 §3.2.1, RFC 7592 §3) that the
// server provisions and a client never sets.
var serverMembers = []string{"client_id", "client_secret", "client_id_issued_at", "client_secret_expires_at",
	"registration_access_token", "registration_client_uri"}

// jwtClaims are the registered JWT claims (RFC 7519 §4.1) of a software statement: about the statement, not
// client metadata.
var jwtClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

const (
	maxValueLen = 2048 // one string value: a URI, a name, a scope string
	maxListLen  = 32   // entries of one list: redirect URIs, contacts, grant types
	maxDepth    = 32   // nesting of objects and arrays: client metadata needs 4 (an inline JWKS)
)

// parseObject reads exactly one JSON object and returns its members. A member named twice, at any depth, is
// refused: two parsers reading "the" value of a duplicated member (fhirwall's, Keycloak's, an auditor's) may
// each read a different one, say a JWK's "x" or "d".
func parseObject(b []byte) (map[string]json.RawMessage, error) {
	if err := noDuplicateMembers(b); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("want one JSON object")
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("want one JSON object")
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("want one JSON object")
		}
		if _, dup := members[name]; dup {
			return nil, fmt.Errorf("member %q appears twice", clip(name))
		}
		members[name] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("want one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	return members, nil
}

// decodeMetadata types the members fhirwall understands. Every value is checked for shape only (strings one
// line, lists without empty or repeated entries); what the values may be is the registration policy's.
func decodeMetadata(members map[string]json.RawMessage) (Metadata, *Refusal) {
	var m Metadata
	var p problems
	str := func(name string, into *string) {
		raw, ok := members[name]
		if !ok || isNull(raw) {
			return
		}
		if err := json.Unmarshal(raw, into); err != nil {
			p.add(InvalidClientMetadata, "%s: want a string", name)
			return
		}
		if err := safeString(*into); err != nil {
			p.add(InvalidClientMetadata, "%s: %v", name, err)
		}
	}
	list := func(name, code string, into *[]string) {
		raw, ok := members[name]
		if !ok || isNull(raw) {
			return
		}
		if err := json.Unmarshal(raw, into); err != nil || slices.Contains(*into, "") {
			p.add(code, "%s: want an array of non-empty strings", name)
			return
		}
		if len(*into) > maxListLen {
			p.add(code, "%s: at most %d entries", name, maxListLen)
			return
		}
		for i, s := range *into {
			if err := safeString(s); err != nil {
				p.add(code, "%s[%d]: %v", name, i, err)
			}
		}
		if dup := duplicate(*into); dup != "" {
			p.add(code, "%s: %q listed twice", name, clip(dup))
		}
	}
	// Redirect URIs first: their problems are answered invalid_redirect_uri.
	list("redirect_uris", InvalidRedirectURI, &m.RedirectURIs)
	str("token_endpoint_auth_method", &m.TokenEndpointAuthMethod)
	list("grant_types", InvalidClientMetadata, &m.GrantTypes)
	list("response_types", InvalidClientMetadata, &m.ResponseTypes)
	str("client_name", &m.ClientName)
	str("client_uri", &m.ClientURI)
	str("logo_uri", &m.LogoURI)
	str("scope", &m.Scope)
	list("contacts", InvalidClientMetadata, &m.Contacts)
	str("tos_uri", &m.TOSURI)
	str("policy_uri", &m.PolicyURI)
	str("jwks_uri", &m.JWKSURI)
	str("software_id", &m.SoftwareID)
	str("software_version", &m.SoftwareVersion)
	str("software_statement", &m.SoftwareStatement)
	if raw, ok := members["jwks"]; ok && !isNull(raw) {
		var compact bytes.Buffer
		if obj, err := parseObject(raw); err != nil || obj == nil || json.Compact(&compact, raw) != nil {
			p.add(InvalidClientMetadata, "jwks: want a JSON Web Key Set object {\"keys\": [...]}")
		} else {
			m.JWKS = compact.Bytes()
		}
	}
	if r := p.refusal(); r != nil {
		return Metadata{}, r
	}
	return m, nil
}

// noDuplicateMembers walks b's tokens and refuses an object that names a member twice.
func noDuplicateMembers(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		names  map[string]bool
		object bool
		key    bool // the next token of this object is a member name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errors.New("want one JSON object")
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if name, ok := tok.(string); ok {
				if top.names[name] {
					return fmt.Errorf("member %q appears twice", clip(name))
				}
				top.names[name], top.key = true, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxDepth {
				return errors.New("nested too deeply")
			}
			stack = append(stack, &frame{names: map[string]bool{}, object: tok == json.Delim('{'), key: true})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: in an object, a member name comes next.
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true
		}
	}
}

// encode is v as JSON without HTML escaping, so an inline JWKS reads back byte for byte as registered.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// safeString bounds what the parser reads: values longer than maxValueLen and invalid UTF-8. What a value
// may hold (control and bidirectional characters, hosts) is the registration policy's, applied to every way
// an app registers (apps.ValidateRegistration).
func safeString(s string) error {
	if len(s) > maxValueLen {
		return fmt.Errorf("longer than %d bytes", maxValueLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	return nil
}

func duplicate(xs []string) string {
	seen := make(map[string]bool, len(xs))
	for _, x := range xs {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return ""
}

// registrant builds the part of an app its registrant describes from the metadata: everything but the client
// id, the lifecycle (state, environment, approvals) and the tier, which the server decides. offered maps each
// API to the scopes it offers.
//
// Defaults are RFC 7591 §2's: token_endpoint_auth_method client_secret_basic, grant_types
// [authorization_code], response_types [code] (for a client that uses the authorization code grant).
func (m Metadata) registrant(offered map[string][]string) (apps.App, *Refusal) {
	var p problems
	auth := m.TokenEndpointAuthMethod
	if auth == "" {
		auth = apps.AuthClientSecretBasic
	}
	grants := m.GrantTypes
	if grants == nil {
		grants = []string{grantAuthorizationCode}
	}
	for _, g := range grants {
		if !slices.Contains([]string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials}, g) {
			p.add(InvalidClientMetadata, "grant_types: %q is not one fhirwall registers (authorization_code, refresh_token, client_credentials)", clip(g))
		}
	}
	code := slices.Contains(grants, grantAuthorizationCode)
	backend := slices.Contains(grants, grantClientCredentials)
	if slices.Contains(grants, grantRefreshToken) && !code {
		p.add(InvalidClientMetadata, "grant_types: refresh_token only with authorization_code")
	}
	if code && backend {
		p.add(InvalidClientMetadata, "grant_types: register a user-facing app (authorization_code) and a backend service (client_credentials) as two clients")
	}
	// RFC 7591 §2.1: grant_types and response_types must agree; the code grant is the only flow with a
	// response type.
	responses := m.ResponseTypes
	if responses == nil && code {
		responses = []string{responseCode}
	}
	for _, rt := range responses {
		if rt != responseCode {
			p.add(InvalidClientMetadata, "response_types: %q is not registered (only code: no implicit or hybrid flow)", clip(rt))
		}
	}
	if code != slices.Contains(responses, responseCode) {
		p.add(InvalidClientMetadata, "response_types: code goes with grant type authorization_code, and only with it (RFC 7591 §2.1)")
	}

	var launch []string
	scopes := strings.Fields(m.Scope)
	if m.Scope != strings.Join(scopes, " ") {
		p.add(InvalidClientMetadata, "scope: want scopes separated by single spaces")
	}
	if dup := duplicate(scopes); dup != "" {
		p.add(InvalidClientMetadata, "scope: %q listed twice", clip(dup))
	}
	if code {
		launch = append(launch, apps.LaunchStandalone)
		if slices.Contains(scopes, "launch") { // SMART App Launch §EHR launch: the launch scope
			launch = append(launch, apps.LaunchEHR)
		}
	}
	if backend {
		launch = append(launch, apps.LaunchBackend)
	}
	apis, r := apisFor(scopes, offered)
	if r != nil {
		p = append(p, *r)
	}
	if r := p.refusal(); r != nil {
		return apps.App{}, r
	}
	contacts := make([]apps.Contact, len(m.Contacts))
	for i, c := range m.Contacts {
		contacts[i] = apps.Contact{Email: c}
	}
	return apps.App{
		Name: m.ClientName, Contacts: contacts,
		LogoURI: m.LogoURI, ClientURI: m.ClientURI, PolicyURI: m.PolicyURI, TOSURI: m.TOSURI,
		RedirectURIs: slices.Clone(m.RedirectURIs), LaunchTypes: launch, TokenAuthMethod: auth,
		JWKSURI: m.JWKSURI, JWKS: m.JWKS,
		RequestedAPIs: apis, RequestedScopes: scopes,
		SoftwareID: m.SoftwareID, SoftwareVersion: m.SoftwareVersion, SoftwareStatement: m.SoftwareStatement,
	}, nil
}

// apisFor is the APIs an app asks for with its scopes: every API one of whose offered scopes covers a
// requested resource scope (decision.Covers, the gateway's own rule). A resource scope no API offers is
// refused here; whether the other scopes (openid, launch/patient …) are offered by those APIs is the
// registration policy's to judge.
func apisFor(scopes []string, offered map[string][]string) ([]string, *Refusal) {
	var p problems
	set := map[string]bool{}
	resource := 0
	for _, s := range scopes {
		if _, err := smart.Parse(s); errors.Is(err, smart.ErrNotResourceScope) {
			continue
		} else if err != nil {
			p.add(InvalidClientMetadata, "scope %q: %v", clip(s), err)
			continue
		}
		resource++
		found := false
		for api, offers := range offered {
			if slices.ContainsFunc(offers, func(o string) bool { return decision.Covers(o, s) }) {
				set[api], found = true, true
			}
		}
		if !found {
			p.add(InvalidClientMetadata, "scope %q: no API fhirwall serves offers it", clip(s))
		}
	}
	if resource == 0 {
		p.add(InvalidClientMetadata, "scope: want at least one resource scope (patient/…, user/… or system/…) naming the data the app reads")
	}
	if r := p.refusal(); r != nil {
		return nil, r
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// metadataOf is the metadata an app is registered with, as a client information response shows it. Grant
// types follow the launch types: an interactive app is registered for the code grant and its refresh tokens
// (whether it gets one is its scopes' business: offline_access), a backend service for client credentials.
func metadataOf(a apps.App) Metadata {
	m := Metadata{
		RedirectURIs: slices.Clone(a.RedirectURIs), TokenEndpointAuthMethod: a.TokenAuthMethod,
		ClientName: a.Name, ClientURI: a.ClientURI, LogoURI: a.LogoURI, Scope: strings.Join(a.RequestedScopes, " "),
		TOSURI: a.TOSURI, PolicyURI: a.PolicyURI, JWKSURI: a.JWKSURI, JWKS: a.JWKS,
		SoftwareID: a.SoftwareID, SoftwareVersion: a.SoftwareVersion, SoftwareStatement: a.SoftwareStatement,
	}
	if slices.Contains(a.LaunchTypes, apps.LaunchStandalone) || slices.Contains(a.LaunchTypes, apps.LaunchEHR) {
		m.GrantTypes = append(m.GrantTypes, grantAuthorizationCode, grantRefreshToken)
		m.ResponseTypes = []string{responseCode}
	}
	if slices.Contains(a.LaunchTypes, apps.LaunchBackend) {
		m.GrantTypes = append(m.GrantTypes, grantClientCredentials)
	}
	for _, c := range a.Contacts {
		m.Contacts = append(m.Contacts, c.Email)
	}
	return m
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
