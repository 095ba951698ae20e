// Package token verifies OAuth 2.0 bearer access tokens issued by the payer's identity providers and turns
// them into an Identity. Signatures, keys and standard claims are checked by go-oidc against each issuer's
// OIDC discovery document and JWKS; this package adds what an API gateway needs beyond an ID-token check.
package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Identity is who is calling, as established by a verified access token.
type Identity struct {
	Issuer   string    `json:"issuer"`
	ClientID string    `json:"client_id"`
	Subject  string    `json:"subject"`
	Patient  string    `json:"patient,omitempty"`
	FHIRUser string    `json:"fhir_user,omitempty"`
	Scopes   []string  `json:"scopes"`
	JTI      string    `json:"jti,omitempty"`
	Expiry   time.Time `json:"expiry"`
}

// Error kinds. Callers branch on them with errors.Is; none of them reveals why to the client.
var (
	ErrMissing     = errors.New("no bearer token")
	ErrInvalid     = errors.New("invalid token")
	ErrUnavailable = errors.New("issuer unavailable") // discovery or JWKS could not be fetched: fail closed
)

// IssuerConfig names one trusted issuer.
type IssuerConfig struct {
	URL        string   // exact issuer identifier; "iss" must match byte for byte
	Audience   string   // required value in "aud"
	Algorithms []string // allowed JWS algorithms; empty means RS256
}

// MaxTokenBytes bounds what is parsed at all.
const MaxTokenBytes = 8 << 10

// Verifier verifies tokens of several issuers. Discovery for each issuer is done lazily and retried no more
// often than once per retryEvery, so fhirwall can start before its identity provider and still fail closed.
type Verifier struct {
	issuers    map[string]*issuer
	retryEvery time.Duration
	now        func() time.Time
}

type issuer struct {
	cfg IssuerConfig

	mu        sync.Mutex
	verifier  *oidc.IDTokenVerifier // nil until discovery succeeded
	lastTried time.Time
}

// NewVerifier builds a verifier; it does not contact the issuers yet.
func NewVerifier(cfgs []IssuerConfig, now func() time.Time) (*Verifier, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("token: at least one issuer is required")
	}
	v := &Verifier{issuers: map[string]*issuer{}, retryEvery: 5 * time.Second, now: now}
	for _, c := range cfgs {
		if c.URL == "" || c.Audience == "" {
			return nil, fmt.Errorf("token: issuer %q needs a URL and an audience", c.URL)
		}
		if len(c.Algorithms) == 0 {
			c.Algorithms = []string{oidc.RS256}
		}
		for _, a := range c.Algorithms {
			if strings.HasPrefix(a, "HS") || strings.EqualFold(a, "none") {
				return nil, fmt.Errorf("token: issuer %q: algorithm %s is not allowed", c.URL, a)
			}
		}
		v.issuers[c.URL] = &issuer{cfg: c}
	}
	return v, nil
}

// FromAuthorization extracts the bearer token from the values of the Authorization header. Exactly one
// header with the Bearer scheme is accepted (RFC 6750 §2.1).
func FromAuthorization(values []string) (string, error) {
	if len(values) == 0 {
		return "", ErrMissing
	}
	if len(values) > 1 {
		return "", fmt.Errorf("%w: more than one Authorization header", ErrInvalid)
	}
	scheme, tok, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t,") {
		return "", fmt.Errorf("%w: not a bearer token", ErrInvalid)
	}
	if len(tok) > MaxTokenBytes {
		return "", fmt.Errorf("%w: token too large", ErrInvalid)
	}
	return tok, nil
}

// Verify checks raw and returns the caller's identity.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	if len(raw) > MaxTokenBytes {
		return Identity{}, fmt.Errorf("%w: token too large", ErrInvalid)
	}
	// Peek at the issuer only to pick which verifier to use; nothing from this parse is trusted.
	iss, err := peek(raw)
	if err != nil {
		return Identity{}, err
	}
	is, ok := v.issuers[iss]
	if !ok {
		return Identity{}, fmt.Errorf("%w: untrusted issuer", ErrInvalid)
	}
	ver, err := is.get(ctx, v.now(), v.retryEvery)
	if err != nil {
		return Identity{}, err
	}
	idt, err := ver.Verify(ctx, raw)
	if err != nil {
		// go-oidc does not tell a bad signature from an unreachable JWKS; both refuse the request.
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var c struct {
		Typ      string `json:"typ"`
		Azp      string `json:"azp"`
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
		Patient  string `json:"patient"`
		FHIRUser string `json:"fhirUser"`
		JTI      string `json:"jti"`
		NBF      *int64 `json:"nbf"`
	}
	if err := idt.Claims(&c); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	// An ID token proves a login to a client, it does not authorise API calls (OIDC Core §2; RFC 9068 §4).
	if strings.EqualFold(c.Typ, "ID") || strings.EqualFold(c.Typ, "id_token") {
		return Identity{}, fmt.Errorf("%w: ID token used as access token", ErrInvalid)
	}
	if c.NBF != nil && time.Unix(*c.NBF, 0).After(v.now().Add(time.Minute)) {
		return Identity{}, fmt.Errorf("%w: not yet valid", ErrInvalid)
	}
	client := c.ClientID
	if client == "" {
		client = c.Azp
	}
	if client == "" || idt.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no client or subject", ErrInvalid)
	}
	return Identity{
		Issuer: idt.Issuer, ClientID: client, Subject: idt.Subject, Patient: c.Patient, FHIRUser: c.FHIRUser,
		Scopes: strings.Fields(c.Scope), JTI: c.JTI, Expiry: idt.Expiry,
	}, nil
}

func peek(raw string) (string, error) {
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}
	tok, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(tok.Headers) != 1 {
		return "", fmt.Errorf("%w: one signature expected", ErrInvalid)
	}
	h := tok.Headers[0]
	// Keys come only from the issuer's JWKS: a token naming its own key is refused outright.
	if h.JSONWebKey != nil || h.ExtraHeaders["jku"] != nil || h.ExtraHeaders["x5u"] != nil {
		return "", fmt.Errorf("%w: token carries its own key reference", ErrInvalid)
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c.Issuer, nil
}

func (is *issuer) get(ctx context.Context, now time.Time, retryEvery time.Duration) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	if !is.lastTried.IsZero() && now.Sub(is.lastTried) < retryEvery {
		return nil, fmt.Errorf("%w: discovery of %s failed recently", ErrUnavailable, is.cfg.URL)
	}
	is.lastTried = now
	// The provider outlives this request: its JWKS refreshes must not be tied to the caller's context.
	p, err := oidc.NewProvider(context.WithoutCancel(ctx), is.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery of %s: %v", ErrUnavailable, is.cfg.URL, err)
	}
	is.verifier = p.Verifier(&oidc.Config{ClientID: is.cfg.Audience, SupportedSigningAlgs: is.cfg.Algorithms})
	return is.verifier, nil
}
