// Package smartclient gets OAuth 2.0 access tokens from a SMART on FHIR authorization server the way real
// clients do, for fhirwall's tests:
//
//   - AuthorizationCodePKCE drives the authorization server's HTML login form like a browser (SMART App
//     Launch 2.x, standalone launch, public client with PKCE S256);
//   - BackendServiceToken is a SMART Backend Services client (client_credentials with a private_key_jwt
//     client assertion, RS384 or ES384).
//
// Both discover the endpoints from {issuer}/.well-known/openid-configuration. The login form driver knows
// Keycloak's login page (form id "kc-form-login"), which is what the test stack runs
// (test/stack/keycloak.sh, realm config/keycloak/fhirwall-realm.json).
//
// HTTP: requests go through the *http.Client stored in the context under oauth2.HTTPClient, else
// http.DefaultClient; the login flow copies that client's Transport into its own client with a cookie jar.
//
// UnverifiedClaims decodes a token's payload without checking its signature: test assertions only.
package smartclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ClientAssertionType is the client_assertion_type of a private_key_jwt client assertion (RFC 7523).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionLifetime is how long a client assertion made by BackendServiceToken is valid. SMART Backend
// Services allows at most five minutes.
const AssertionLifetime = 4 * time.Minute

// Token is a token endpoint response.
type Token struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	// IDToken is the "id_token" member (authorization code flow with the openid scope), else empty.
	IDToken string
	// Scope is the "scope" member: the scopes granted, space separated.
	Scope string
	// Patient is the "patient" member of the token response (SMART launch context, launch/patient),
	// not the access token's claim.
	Patient string
	// ExpiresIn is the "expires_in" member, in seconds.
	ExpiresIn int64
	// Raw is the oauth2 token, for other response members (Raw.Extra("name")).
	Raw *oauth2.Token
}

// Scopes returns the granted scopes as a list.
func (t *Token) Scopes() []string { return strings.Fields(t.Scope) }

// Endpoints are the parts of the authorization server's OpenID configuration this package uses.
type Endpoints struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	JWKSURI                       string   `json:"jwks_uri"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
}

// Discover reads {issuer}/.well-known/openid-configuration and checks that it names the same issuer.
func Discover(ctx context.Context, issuer string) (*Endpoints, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := baseClient(ctx).Do(req)
	if err != nil {
		return nil, fmt.Errorf("smartclient: discovery: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("smartclient: discovery: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("smartclient: discovery: GET %s: %s", u, resp.Status)
	}
	var ep Endpoints
	if err := json.Unmarshal(body, &ep); err != nil {
		return nil, fmt.Errorf("smartclient: discovery: %w", err)
	}
	if ep.Issuer != issuer {
		return nil, fmt.Errorf("smartclient: discovery: issuer is %q, want %q", ep.Issuer, issuer)
	}
	if ep.AuthorizationEndpoint == "" || ep.TokenEndpoint == "" {
		return nil, errors.New("smartclient: discovery: authorization_endpoint or token_endpoint missing")
	}
	return &ep, nil
}

// AuthorizationCodePKCE logs username in with password through the authorization server's login form and
// returns the tokens for clientID, as a SMART standalone launch by a public client would (SMART App Launch
// 2.x: authorization code grant, PKCE S256, state):
//
//  1. GET the authorization endpoint (response_type=code, client_id, redirect_uri, scope, state,
//     code_challenge, code_challenge_method=S256) with a cookie jar, and read the login form
//     (form id "kc-form-login");
//  2. POST the form's fields with username and password to the form's action;
//  3. take the 302 to redirectURI without following it (nothing needs to listen there), refuse an error
//     response or a state that is not ours;
//  4. exchange the code and the PKCE verifier at the token endpoint.
//
// The user must not face a consent page or a required action (update profile, OTP...): that is an error.
//
// The request's aud (SMART App Launch 2.x: the FHIR base the app launches against) is DefaultAudience unless
// WithAudience says otherwise. A refusal on the redirect URI is an *AuthorizationError.
func AuthorizationCodePKCE(ctx context.Context, issuer, clientID, redirectURI string, scopes []string, username, password string, opts ...LaunchOption) (*Token, error) {
	launch := launchOptions{aud: DefaultAudience}
	for _, o := range opts {
		o(&launch)
	}
	ep, err := Discover(ctx, issuer)
	if err != nil {
		return nil, err
	}
	redirect, err := url.Parse(redirectURI)
	if err != nil {
		return nil, fmt.Errorf("smartclient: redirect URI: %w", err)
	}
	conf := &oauth2.Config{
		ClientID:    clientID,
		RedirectURL: redirectURI,
		Scopes:      scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   ep.AuthorizationEndpoint,
			TokenURL:  ep.TokenEndpoint,
			AuthStyle: oauth2.AuthStyleInParams, // public client: client_id in the body, no secret
		},
	}
	verifier := oauth2.GenerateVerifier()
	state := randomHex(16)

	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	browser := &http.Client{
		Transport: baseClient(ctx).Transport,
		Jar:       jar,
		// Follow the authorization server's own redirects, stop at the client's redirect URI.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if sameEndpoint(req.URL, redirect) {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("smartclient: too many redirects")
			}
			return nil
		},
	}

	// 1. The authorization request.
	authOpts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if launch.aud != "" {
		authOpts = append(authOpts, oauth2.SetAuthURLParam("aud", launch.aud))
	}
	resp, err := get(ctx, browser, conf.AuthCodeURL(state, authOpts...))
	if err != nil {
		return nil, fmt.Errorf("smartclient: authorization request: %w", err)
	}
	loc, page, err := readPage(resp, redirect)
	if err != nil {
		return nil, fmt.Errorf("smartclient: authorization request: %w", err)
	}
	if loc == nil { // no SSO session yet: the login page
		// 2. The login form.
		form, err := findForm(page, "kc-form-login")
		if err != nil {
			return nil, fmt.Errorf("smartclient: login page: %w (%s)", err, pageMessage(page))
		}
		action, err := resp.Request.URL.Parse(form.action)
		if err != nil {
			return nil, fmt.Errorf("smartclient: login form action: %w", err)
		}
		form.fields.Set("username", username)
		form.fields.Set("password", password)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.fields.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err = browser.Do(req)
		if err != nil {
			return nil, fmt.Errorf("smartclient: login: %w", err)
		}
		loc, page, err = readPage(resp, redirect)
		if err != nil {
			return nil, fmt.Errorf("smartclient: login: %w", err)
		}
		if loc == nil {
			return nil, fmt.Errorf("smartclient: login of %q did not redirect to %s: %s", username, redirectURI, pageMessage(page))
		}
	}

	// 3. The authorization response.
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		return nil, &AuthorizationError{Code: e, Description: q.Get("error_description")}
	}
	if got := q.Get("state"); got != state {
		return nil, fmt.Errorf("smartclient: authorization response state %q does not match the request", got)
	}
	code := q.Get("code")
	if code == "" {
		return nil, errors.New("smartclient: authorization response has no code")
	}

	// 4. The token request.
	tok, err := conf.Exchange(withClient(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("smartclient: token exchange: %w", err)
	}
	return newToken(tok), nil
}

// DefaultAudience is the aud AuthorizationCodePKCE sends unless told otherwise: the test stack's standalone
// patient-access base (config/fhirwall.yaml proxy.public_url), one of the realm's FHIR bases.
const DefaultAudience = "http://127.0.0.1:8080/patient-access/fhir"

// A LaunchOption changes the authorization request AuthorizationCodePKCE sends.
type LaunchOption func(*launchOptions)

type launchOptions struct {
	aud string
}

// WithAudience sends aud as the FHIR base the app launches against; "" sends no aud at all.
func WithAudience(aud string) LaunchOption {
	return func(o *launchOptions) { o.aud = aud }
}

// AuthorizationError is the authorization server's error response on the redirect URI (RFC 6749 §4.1.2.1):
// it refused the request and issued no code.
type AuthorizationError struct {
	Code        string // error, e.g. invalid_request
	Description string // error_description
}

func (e *AuthorizationError) Error() string {
	return fmt.Sprintf("smartclient: authorization error %s: %s", e.Code, e.Description)
}

// BackendServiceToken gets an access token for a SMART Backend Services client: grant_type
// client_credentials, authenticated with a client assertion (private_key_jwt, RFC 7523) that key signs.
// The assertion has iss = sub = clientID, aud = the token endpoint (one value), a unique jti, iat, and exp
// AssertionLifetime ahead; its header carries kid. An RSA key signs with RS384, a P-384 ECDSA key with ES384
// (the two algorithms SMART Backend Services names).
func BackendServiceToken(ctx context.Context, issuer, clientID string, key crypto.Signer, kid string, scopes []string) (*Token, error) {
	ep, err := Discover(ctx, issuer)
	if err != nil {
		return nil, err
	}
	assertion, err := ClientAssertion(clientID, ep.TokenEndpoint, key, kid, time.Now())
	if err != nil {
		return nil, err
	}
	conf := &clientcredentials.Config{
		ClientID: clientID,
		TokenURL: ep.TokenEndpoint,
		Scopes:   scopes,
		EndpointParams: url.Values{
			"client_assertion_type": {ClientAssertionType},
			"client_assertion":      {assertion},
		},
		AuthStyle: oauth2.AuthStyleInParams, // client_id in the body, no client secret
	}
	tok, err := conf.Token(withClient(ctx))
	if err != nil {
		return nil, fmt.Errorf("smartclient: client credentials token: %w", err)
	}
	return newToken(tok), nil
}

// ClientAssertion makes the signed client assertion BackendServiceToken sends (see there), issued at now.
// Exported so tests can send their own variants.
func ClientAssertion(clientID, tokenEndpoint string, key crypto.Signer, kid string, now time.Time) (string, error) {
	var alg jose.SignatureAlgorithm
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		alg = jose.RS384
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P384() {
			return "", errors.New("smartclient: ECDSA client keys must be P-384 (ES384)")
		}
		alg = jose.ES384
	default:
		return "", fmt.Errorf("smartclient: unsupported client key %T (want RSA or P-384 ECDSA)", pub)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(key)}, opts)
	if err != nil {
		return "", fmt.Errorf("smartclient: signer: %w", err)
	}
	claims := jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{tokenEndpoint}, // one value: serialised as a string
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(AssertionLifetime)),
		ID:       randomHex(16),
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("smartclient: client assertion: %w", err)
	}
	return s, nil
}

// LoadPrivateKey reads a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC), e.g. the test keys in
// test/fixtures/keys.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePrivateKey(b)
}

// ParsePrivateKey parses a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC).
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, errors.New("smartclient: no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("smartclient: unexpected PEM block %q", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("smartclient: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("smartclient: %T is not a signer", k)
	}
	return s, nil
}

// UnverifiedClaims returns the claims of a signed JWT WITHOUT checking its signature, issuer or expiry.
// For test assertions on tokens just received from the authorization server; never for authorization.
func UnverifiedClaims(token string) (map[string]any, error) {
	t, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
		jose.HS256, jose.HS384, jose.HS512, // Keycloak signs its refresh tokens with HS512
	})
	if err != nil {
		return nil, fmt.Errorf("smartclient: %w", err)
	}
	var claims map[string]any
	if err := t.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return nil, fmt.Errorf("smartclient: %w", err)
	}
	return claims, nil
}

// ---- helpers ----

func newToken(t *oauth2.Token) *Token {
	str := func(k string) string { s, _ := t.Extra(k).(string); return s }
	return &Token{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		IDToken:      str("id_token"),
		Scope:        str("scope"),
		Patient:      str("patient"),
		ExpiresIn:    expiresIn(t),
		Raw:          t,
	}
}

// expiresIn reads expires_in; golang.org/x/oauth2/clientcredentials does not copy it into Token.ExpiresIn.
func expiresIn(t *oauth2.Token) int64 {
	if t.ExpiresIn != 0 {
		return t.ExpiresIn
	}
	switch v := t.Extra("expires_in").(type) {
	case float64:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func baseClient(ctx context.Context) *http.Client {
	if c, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && c != nil {
		return c
	}
	return http.DefaultClient
}

// withClient makes sure the oauth2 package uses the same client as the rest of the flow.
func withClient(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, baseClient(ctx))
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func sameEndpoint(u, redirect *url.URL) bool {
	return u.Scheme == redirect.Scheme && u.Host == redirect.Host && u.Path == redirect.Path
}

func get(ctx context.Context, c *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/html")
	return c.Do(req)
}

// readPage consumes resp. A redirect to the client's redirect URI comes back as its URL; a 200 page is
// parsed; anything else is an error.
func readPage(resp *http.Response, redirect *url.URL) (*url.URL, *html.Node, error) {
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc, err := resp.Location()
		if err != nil {
			return nil, nil, err
		}
		if !sameEndpoint(loc, redirect) {
			return nil, nil, fmt.Errorf("unexpected redirect to %s", loc)
		}
		return loc, nil, nil
	}
	doc, err := html.Parse(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s", resp.Status, pageMessage(doc))
	}
	return nil, doc, nil
}

type htmlForm struct {
	action string
	fields url.Values
}

// findForm returns the action and the named input fields of the form with the given id.
func findForm(doc *html.Node, id string) (*htmlForm, error) {
	f := find(doc, func(n *html.Node) bool { return n.Data == "form" && attr(n, "id") == id })
	if f == nil {
		return nil, fmt.Errorf("no form %q", id)
	}
	form := &htmlForm{action: attr(f, "action"), fields: url.Values{}}
	if form.action == "" {
		return nil, fmt.Errorf("form %q has no action", id)
	}
	walk(f, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") != "" {
			switch strings.ToLower(attr(n, "type")) {
			case "submit", "button", "checkbox", "radio":
				return
			}
			form.fields.Set(attr(n, "name"), attr(n, "value"))
		}
	})
	return form, nil
}

// pageMessage summarises an unexpected page for an error: its title and Keycloak's error or info text.
func pageMessage(doc *html.Node) string {
	if doc == nil {
		return ""
	}
	var parts []string
	if t := find(doc, func(n *html.Node) bool { return n.Data == "title" }); t != nil {
		parts = append(parts, "page "+strings.TrimSpace(text(t)))
	}
	for _, id := range []string{"input-error", "input-error-username", "kc-page-title", "kc-error-message", "kc-info-message"} {
		if n := find(doc, func(n *html.Node) bool { return attr(n, "id") == id }); n != nil {
			if s := strings.Join(strings.Fields(text(n)), " "); s != "" {
				parts = append(parts, s)
			}
		}
	}
	if n := find(doc, func(n *html.Node) bool { return strings.Contains(attr(n, "class"), "alert-error") }); n != nil {
		if s := strings.Join(strings.Fields(text(n)), " "); s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return "unrecognised page"
	}
	return strings.Join(parts, ": ")
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	if n.Type == html.ElementNode && match(n) {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if m := find(c, match); m != nil {
			return m
		}
	}
	return nil
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
	})
	return b.String()
}
