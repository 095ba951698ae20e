// Package token verifies OAuth 2.0 bearer access tokens issued by the payer's identity providers and turns
// them into an Identity. JWT signatures and standard claims are checked by go-oidc against each issuer's
// OIDC discovery document and a JWKS cache of our own; opaque tokens go to RFC 7662 introspection.
package token

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
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
	Org      string    `json:"org,omitempty"` // claim fhirwall_org of backend clients, e.g. Organization/org-a
	Scopes   []string  `json:"scopes"`
	JTI      string    `json:"jti,omitempty"`
	Expiry   time.Time `json:"expiry"`
	// IssuedAt is the token's iat; AuthTime its auth_time (OIDC Core §2), when the end user signed in. A
	// refreshed token keeps the sign-in's auth_time, which is what lets a member's revocation of an app reach
	// tokens refreshed after it was given (adapters/registry/revocation). Zero when the claim is absent.
	IssuedAt time.Time `json:"issued_at,omitzero"`
	AuthTime time.Time `json:"auth_time,omitzero"`
}

// Error kinds. Callers branch on them with errors.Is; none of them reveals why to the client.
var (
	ErrMissing     = errors.New("no bearer token")
	ErrInvalid     = errors.New("invalid token")
	ErrUnavailable = errors.New("issuer unavailable") // discovery, JWKS or introspection unreachable: fail closed
)

func isUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IssuerConfig names one trusted issuer.
type IssuerConfig struct {
	URL           string               // exact issuer identifier; "iss" must match byte for byte
	Audience      string               // required value in "aud"
	Algorithms    []string             // allowed JWS algorithms; empty means RS256
	Introspection *IntrospectionConfig // optional: RFC 7662 endpoint for opaque tokens
}

// Options tune the verifier. The zero value of each field but ClockSkew means its default.
type Options struct {
	// ClockSkew is the leeway applied alike to exp, nbf and iat; at most MaxClockSkew. Zero means none.
	ClockSkew time.Duration
	// MinRefetchInterval is the least time between two JWKS fetches of one issuer (default 30 s).
	MinRefetchInterval time.Duration
	// CacheSize bounds the verified-token cache (default 10 000 entries; negative turns it off).
	CacheSize int
	// HTTPClient fetches discovery, JWKS and introspection (default: a client with a 5 s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults and bounds of Options.
const (
	DefaultClockSkew          = 60 * time.Second
	MaxClockSkew              = 5 * time.Minute
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultCacheSize          = 10_000
)

// MaxTokenBytes bounds what is parsed at all.
const MaxTokenBytes = 8 << 10

// allowedAlgorithms are the asymmetric JWS algorithms an issuer may be configured with. HMAC would let
// anyone holding the shared secret (or, in the classic attack, the RSA public key) mint tokens; "none" is
// no signature at all.
var allowedAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384,
	jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// Verifier verifies tokens of several issuers. Discovery for each issuer is done lazily and retried no more
// often than once per retryEvery, so fhirwall can start before its identity provider and still fail closed.
type Verifier struct {
	issuers    map[string]*issuer
	ordered    []*issuer // configuration order, for introspection
	retryEvery time.Duration
	minRefetch time.Duration
	skew       time.Duration
	client     *http.Client
	now        func() time.Time
	cache      *identityCache
}

type issuer struct {
	cfg  IssuerConfig
	algs []jose.SignatureAlgorithm

	mu        sync.Mutex
	verifier  *oidc.IDTokenVerifier // nil until discovery succeeded
	lastTried time.Time
}

// NewVerifier builds a verifier; it does not contact the issuers yet.
func NewVerifier(cfgs []IssuerConfig, opts Options) (*Verifier, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("token: at least one issuer is required")
	}
	if opts.ClockSkew < 0 || opts.ClockSkew > MaxClockSkew {
		return nil, fmt.Errorf("token: clock skew %v: want 0 to %v", opts.ClockSkew, MaxClockSkew)
	}
	if opts.MinRefetchInterval <= 0 {
		opts.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	v := &Verifier{issuers: map[string]*issuer{}, retryEvery: retryNoKeysIn, minRefetch: opts.MinRefetchInterval,
		skew: opts.ClockSkew, client: opts.HTTPClient, now: opts.Now, cache: newIdentityCache(opts.CacheSize)}
	for _, c := range cfgs {
		if c.URL == "" || c.Audience == "" {
			return nil, fmt.Errorf("token: issuer %q needs a URL and an audience", c.URL)
		}
		if _, dup := v.issuers[c.URL]; dup {
			return nil, fmt.Errorf("token: issuer %q appears twice", c.URL)
		}
		if len(c.Algorithms) == 0 {
			c.Algorithms = []string{oidc.RS256}
		}
		is := &issuer{cfg: c}
		for _, a := range c.Algorithms {
			alg := jose.SignatureAlgorithm(a)
			if !contains(allowedAlgorithms, alg) {
				return nil, fmt.Errorf("token: issuer %q: algorithm %s is not allowed (want one of %v)", c.URL, a, allowedAlgorithms)
			}
			is.algs = append(is.algs, alg)
		}
		if ic := c.Introspection; ic != nil && (ic.URL == "" || ic.ClientID == "") {
			return nil, fmt.Errorf("token: issuer %q: introspection needs a URL and a client id", c.URL)
		}
		v.issuers[c.URL] = is
		v.ordered = append(v.ordered, is)
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

// Verify checks raw and returns the caller's identity. A token verified once is trusted, by the SHA-256 of
// its bytes, until it expires or for MaxCacheTTL, whichever comes first.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	if raw == "" || len(raw) > MaxTokenBytes {
		return Identity{}, fmt.Errorf("%w: empty or too large", ErrInvalid)
	}
	key := cacheKey(raw)
	now := v.now()
	if id, ok := v.cache.get(key, now); ok {
		return id, nil
	}
	var (
		id    Identity
		until time.Time
		err   error
	)
	// A JWS in compact form has exactly two dots (RFC 7515 §7.1); anything else is an opaque token.
	if strings.Count(raw, ".") == 2 {
		id, err = v.verifyJWT(ctx, raw)
		until = id.Expiry
	} else {
		id, until, err = v.introspect(ctx, raw)
	}
	if err != nil {
		return Identity{}, err
	}
	if limit := now.Add(MaxCacheTTL); until.After(limit) {
		until = limit
	}
	v.cache.put(key, id, until)
	return id, nil
}

// claims are the access-token claims fhirwall reads beyond the registered ones go-oidc checks.
type claims struct {
	Typ      string `json:"typ"`
	Azp      string `json:"azp"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Patient  string `json:"patient"`
	FHIRUser string `json:"fhirUser"`
	Org      string `json:"fhirwall_org"`
	JTI      string `json:"jti"`
	IAT      *int64 `json:"iat"`
	AuthTime *int64 `json:"auth_time"`
}

func (c claims) identity(iss, sub string, expiry time.Time) (Identity, error) {
	// An ID token proves a login to a client, it does not authorise API calls (OIDC Core §2; RFC 9068 §4).
	if strings.EqualFold(c.Typ, "ID") || strings.EqualFold(c.Typ, "id_token") {
		return Identity{}, fmt.Errorf("%w: ID token used as access token", ErrInvalid)
	}
	client := c.ClientID
	if client == "" {
		client = c.Azp
	}
	if client == "" || sub == "" {
		return Identity{}, fmt.Errorf("%w: no client or subject", ErrInvalid)
	}
	return Identity{Issuer: iss, ClientID: client, Subject: sub, Patient: c.Patient, FHIRUser: c.FHIRUser,
		Org: c.Org, Scopes: strings.Fields(c.Scope), JTI: c.JTI, Expiry: expiry, IssuedAt: unixOrZero(c.IAT),
		AuthTime: unixOrZero(c.AuthTime)}, nil
}

func unixOrZero(s *int64) time.Time {
	if s == nil {
		return time.Time{}
	}
	return time.Unix(*s, 0)
}

func (v *Verifier) verifyJWT(ctx context.Context, raw string) (Identity, error) {
	// Peek at the issuer only to pick which verifier to use; nothing from this parse is trusted.
	iss, err := peek(raw)
	if err != nil {
		return Identity{}, err
	}
	is, ok := v.issuers[iss]
	if !ok {
		return Identity{}, fmt.Errorf("%w: untrusted issuer", ErrInvalid)
	}
	ver, err := v.verifierFor(ctx, is)
	if err != nil {
		return Identity{}, err
	}
	slot := &keysetErrSlot{}
	idt, err := ver.Verify(context.WithValue(ctx, keysetErrKey{}, slot), raw)
	if err != nil {
		if isUnavailable(slot.err) {
			return Identity{}, slot.err
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var c struct {
		claims
		NBF *int64 `json:"nbf"`
	}
	if err := idt.Claims(&c); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	// go-oidc checks exp against Now (our clock minus the skew) but lets nbf run 5 minutes ahead whatever
	// the skew; nbf and iat are held to the same skew here (RFC 7519 §4.1.5, §4.1.6).
	latest := v.now().Add(v.skew)
	if c.NBF != nil && time.Unix(*c.NBF, 0).After(latest) {
		return Identity{}, fmt.Errorf("%w: not yet valid", ErrInvalid)
	}
	if c.IAT != nil && time.Unix(*c.IAT, 0).After(latest) {
		return Identity{}, fmt.Errorf("%w: issued in the future", ErrInvalid)
	}
	return c.claims.identity(idt.Issuer, idt.Subject, idt.Expiry)
}

func peek(raw string) (string, error) {
	tok, err := jwt.ParseSigned(raw, allowedAlgorithms)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(tok.Headers) != 1 {
		return "", fmt.Errorf("%w: one signature expected", ErrInvalid)
	}
	h := tok.Headers[0]
	// Keys come only from the issuer's JWKS: a token naming its own key is refused outright.
	_, x5cErr := h.Certificates(x509.VerifyOptions{})
	hasX5C := !errors.Is(x5cErr, jose.ErrMissingX5cHeader)
	if h.JSONWebKey != nil || hasX5C || h.ExtraHeaders["jku"] != nil || h.ExtraHeaders["x5u"] != nil {
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

// verifierFor runs discovery for the issuer once it succeeds, and no more often than retryEvery until then.
func (v *Verifier) verifierFor(ctx context.Context, is *issuer) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	now := v.now()
	if !is.lastTried.IsZero() && now.Sub(is.lastTried) < v.retryEvery {
		return nil, fmt.Errorf("%w: discovery of %s failed recently", ErrUnavailable, is.cfg.URL)
	}
	is.lastTried = now
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), v.client), fetchTimeout)
	defer cancel()
	// NewProvider also checks that the document's issuer is exactly ours (OIDC Discovery §4.3).
	p, err := oidc.NewProvider(dctx, is.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery of %s: %v", ErrUnavailable, is.cfg.URL, err)
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKSURL == "" {
		return nil, fmt.Errorf("%w: discovery of %s: no jwks_uri", ErrUnavailable, is.cfg.URL)
	}
	ks := &keySet{url: doc.JWKSURL, algs: is.algs, client: v.client, now: v.now, minRefetch: v.minRefetch,
		retryEmpty: v.retryEvery, maxAge: keysMaxAge}
	skew := v.skew
	is.verifier = oidc.NewVerifier(is.cfg.URL, ks, &oidc.Config{
		ClientID:             is.cfg.Audience,
		SupportedSigningAlgs: is.cfg.Algorithms,
		// exp is accepted until exp+skew: go-oidc compares it with this clock.
		Now: func() time.Time { return v.now().Add(-skew) },
	})
	return is.verifier, nil
}

func contains[T comparable](list []T, x T) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}
