package token

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// IntrospectionConfig is an issuer's RFC 7662 token introspection endpoint, used for opaque access tokens.
type IntrospectionConfig struct {
	URL          string
	ClientID     string
	ClientSecret string
}

const maxIntrospectionBytes = 64 << 10

// introspectionNoExpTTL is how long an active answer without "exp" is cached: RFC 7662 §2.2 makes exp
// optional, and with no expiry to bound it a revocation should not wait the full MaxCacheTTL.
const introspectionNoExpTTL = time.Minute

// introspection is an RFC 7662 answer: "active" plus the token's claims.
type introspection struct {
	Active    bool            `json:"active"`
	Issuer    string          `json:"iss"`
	Audience  json.RawMessage `json:"aud"` // a string or an array of strings
	Exp       *int64          `json:"exp"`
	NBF       *int64          `json:"nbf"`
	Subject   string          `json:"sub"`
	TokenType string          `json:"token_type"`
	claims
}

// introspect asks the issuers that have an introspection endpoint, in configuration order, about an opaque
// token. The first active answer wins; if none is active and one endpoint could not answer, the request
// fails closed with ErrUnavailable rather than being told the token is bad.
func (v *Verifier) introspect(ctx context.Context, raw string) (Identity, time.Time, error) {
	unavailable := error(nil)
	tried := false
	for _, is := range v.ordered {
		if is.cfg.Introspection == nil {
			continue
		}
		tried = true
		id, until, err := v.introspectAt(ctx, is, raw)
		switch {
		case err == nil:
			return id, until, nil
		case isUnavailable(err):
			unavailable = err
		}
	}
	if !tried {
		return Identity{}, time.Time{}, fmt.Errorf("%w: not a JWT and no issuer introspects opaque tokens", ErrInvalid)
	}
	if unavailable != nil {
		return Identity{}, time.Time{}, unavailable
	}
	return Identity{}, time.Time{}, fmt.Errorf("%w: token not active", ErrInvalid)
}

func (v *Verifier) introspectAt(ctx context.Context, is *issuer, raw string) (Identity, time.Time, error) {
	ic := is.cfg.Introspection
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ic.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: introspection: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: client_secret_basic with form-encoded id and secret.
	req.SetBasicAuth(url.QueryEscape(ic.ClientID), url.QueryEscape(ic.ClientSecret))
	resp, err := v.client.Do(req)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: introspection at %s: %v", ErrUnavailable, ic.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Our own credentials refused (401) is a configuration fault, not the caller's: also 503.
		return Identity{}, time.Time{}, fmt.Errorf("%w: introspection at %s: status %d", ErrUnavailable, ic.URL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil || len(body) > maxIntrospectionBytes {
		return Identity{}, time.Time{}, fmt.Errorf("%w: introspection at %s: unreadable answer", ErrUnavailable, ic.URL)
	}
	var r introspection
	if err := json.Unmarshal(body, &r); err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: introspection at %s: %v", ErrUnavailable, ic.URL, err)
	}
	if !r.Active {
		return Identity{}, time.Time{}, fmt.Errorf("%w: token not active", ErrInvalid)
	}
	if r.Issuer != "" && r.Issuer != is.cfg.URL {
		return Identity{}, time.Time{}, fmt.Errorf("%w: introspection names another issuer", ErrInvalid)
	}
	if len(r.Audience) > 0 && !audienceContains(r.Audience, is.cfg.Audience) {
		return Identity{}, time.Time{}, fmt.Errorf("%w: audience", ErrInvalid)
	}
	if r.TokenType != "" && !strings.EqualFold(r.TokenType, "Bearer") && !strings.EqualFold(r.TokenType, "access_token") {
		return Identity{}, time.Time{}, fmt.Errorf("%w: token type %q", ErrInvalid, r.TokenType)
	}
	now := v.now()
	var expiry time.Time
	until := now.Add(introspectionNoExpTTL)
	if r.Exp != nil {
		expiry = time.Unix(*r.Exp, 0)
		if expiry.Before(now.Add(-v.skew)) {
			return Identity{}, time.Time{}, fmt.Errorf("%w: expired", ErrInvalid)
		}
		until = expiry
	}
	if r.NBF != nil && time.Unix(*r.NBF, 0).After(now.Add(v.skew)) {
		return Identity{}, time.Time{}, fmt.Errorf("%w: not yet valid", ErrInvalid)
	}
	id, err := r.claims.identity(is.cfg.URL, r.Subject, expiry)
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	return id, until, nil
}

func audienceContains(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	return json.Unmarshal(raw, &many) == nil && slices.Contains(many, want)
}
