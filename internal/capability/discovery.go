package capability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoints is what an issuer's OpenID Connect discovery document says about itself (OIDC Discovery 1.0
// §3). A value is shared and never modified: the handler re-renders its documents only when it gets a
// different *Endpoints.
type Endpoints struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
}

// OIDCDiscovery fetches issuers' discovery documents and keeps each for TTL. A failed fetch is remembered
// for RetryAfter, so a down IdP is not asked once per request.
type OIDCDiscovery struct {
	Client     *http.Client
	TTL        time.Duration
	RetryAfter time.Duration
	Now        func() time.Time

	mu      sync.Mutex // serialises fetches; readers of a fresh entry do not take it
	entries sync.Map   // issuer → *atomic.Pointer[discovered]
}

type discovered struct {
	ep      *Endpoints
	err     error
	expires time.Time
}

// maxDiscoveryBytes bounds what fhirwall reads from an IdP; real documents are a few KiB.
const maxDiscoveryBytes = 1 << 20

// Discover returns the issuer's endpoints, fetching them when the cached copy is older than TTL.
func (d *OIDCDiscovery) Discover(ctx context.Context, issuer string) (*Endpoints, error) {
	p := d.entry(issuer)
	if c := p.Load(); c != nil && d.Now().Before(c.expires) {
		return c.ep, c.err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := p.Load(); c != nil && d.Now().Before(c.expires) { // another request fetched it meanwhile
		return c.ep, c.err
	}
	ep, err := d.fetch(ctx, issuer)
	if err != nil {
		p.Store(&discovered{err: err, expires: d.Now().Add(d.RetryAfter)})
		return nil, err
	}
	if c := p.Load(); c != nil && c.ep != nil && sameEndpoints(c.ep, ep) {
		ep = c.ep // unchanged: keep the pointer so nothing is re-rendered
	}
	p.Store(&discovered{ep: ep, expires: d.Now().Add(d.TTL)})
	return ep, nil
}

func (d *OIDCDiscovery) entry(issuer string) *atomic.Pointer[discovered] {
	v, _ := d.entries.LoadOrStore(issuer, &atomic.Pointer[discovered]{})
	return v.(*atomic.Pointer[discovered])
}

func (d *OIDCDiscovery) fetch(ctx context.Context, issuer string) (*Endpoints, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDiscovery, issuer, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDiscovery, issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s: status %d", ErrDiscovery, u, resp.StatusCode)
	}
	var ep Endpoints
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscoveryBytes)).Decode(&ep); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDiscovery, u, err)
	}
	// OIDC Discovery 1.0 §4.3: the issuer in the document must be exactly the one asked for; anything else
	// is another IdP's endpoints (or an attacker's), which apps would then send their credentials to.
	if ep.Issuer != issuer {
		return nil, fmt.Errorf("%w: %s names issuer %q", ErrDiscovery, u, ep.Issuer)
	}
	if ep.AuthorizationEndpoint == "" || ep.TokenEndpoint == "" || ep.JWKSURI == "" {
		return nil, fmt.Errorf("%w: %s lacks authorization_endpoint, token_endpoint or jwks_uri", ErrDiscovery, u)
	}
	return &ep, nil
}

func sameEndpoints(a, b *Endpoints) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
