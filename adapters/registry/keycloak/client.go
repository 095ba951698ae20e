// Package keycloak keeps a Keycloak realm's clients in sync with the app registry (adapters/registry/postgres)
// through Keycloak's admin REST API, corrects drift both ways, and implements apps.IdP (secret rotation,
// ending sessions, members' grants).
package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Errors of the admin API client.
var (
	// ErrKeycloak is an answer Keycloak should not have given (5xx, an unexpected status, a body that does
	// not parse); the breaker counts it.
	ErrKeycloak = errors.New("keycloak: admin API failed")
	// ErrUnreachable is Keycloak not answering, or its breaker open.
	ErrUnreachable = errors.New("keycloak: unreachable")
	// errNotFound is a 404 from the admin API: the resource does not exist.
	errNotFound = errors.New("keycloak: not found")
)

// Breaker policy, as for every outside system: five failures in a row open it for ten seconds. A caller that
// stops waiting is not counted (ARCHITECTURE Invariant 6).
const (
	breakerTrips = 5
	breakerOpen  = 10 * time.Second
	// callTimeout bounds one admin API call, the token request included.
	callTimeout = 10 * time.Second
	// tokenMargin: a cached token is renewed this long before it expires.
	tokenMargin = 30 * time.Second
)

// admin is a client of one realm's admin REST API, signed in as a service account (client_credentials).
type admin struct {
	base, realm      string
	clientID, secret string
	http             *http.Client
	breaker          *gobreaker.CircuitBreaker[[]byte]
	now              func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

func newAdmin(base, realm, clientID, secret string, hc *http.Client, now func() time.Time) *admin {
	if hc == nil {
		hc = &http.Client{Timeout: callTimeout}
	}
	return &admin{
		base: strings.TrimRight(base, "/"), realm: realm, clientID: clientID, secret: secret, http: hc, now: now,
		breaker: gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
			Name:        "keycloak-admin",
			Timeout:     breakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= breakerTrips },
			IsExcluded:  func(err error) bool { return errors.Is(err, errCallerGone) },
		}),
	}
}

var errCallerGone = errors.New("keycloak: caller stopped waiting")

// accessToken returns a cached token, or signs in again when it is near expiry.
func (a *admin) accessToken(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && a.now().Before(a.expires.Add(-tokenMargin)) {
		return a.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {a.clientID}, "client_secret": {a.secret}}
	body, err := a.call(ctx, http.MethodPost, a.base+"/realms/"+url.PathEscape(a.realm)+"/protocol/openid-connect/token",
		"application/x-www-form-urlencoded", strings.NewReader(form.Encode()), "")
	if err != nil {
		return "", fmt.Errorf("keycloak: sign in as %s: %w", a.clientID, err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("%w: sign in as %s: no access token in the answer", ErrKeycloak, a.clientID)
	}
	a.token, a.expires = tr.AccessToken, a.now().Add(time.Duration(tr.ExpiresIn)*time.Second)
	return a.token, nil
}

// do calls the admin API at path (under /admin/realms/{realm}) with in as JSON (nil: no body) and decodes
// the answer into out (nil: ignored). A 404 is errNotFound; a 401 drops the cached token.
func (a *admin) do(ctx context.Context, method, path string, in, out any) error {
	tok, err := a.accessToken(ctx)
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	res, err := a.call(ctx, method, a.base+"/admin/realms/"+url.PathEscape(a.realm)+path, "application/json", body, tok)
	if se := (*statusError)(nil); errors.As(err, &se) && se.code == http.StatusUnauthorized {
		a.mu.Lock()
		a.token = "" // signed out (token revoked, realm recreated): sign in again next time
		a.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("keycloak: %s %s: %w", method, path, err)
	}
	if out != nil && len(res) > 0 {
		if err := json.Unmarshal(res, out); err != nil {
			return fmt.Errorf("%w: %s %s: answer: %v", ErrKeycloak, method, path, err)
		}
	}
	return nil
}

// statusError is a refusal by Keycloak (4xx): the request was wrong, not Keycloak broken.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("keycloak answered %d: %s", e.code, e.msg) }

// call makes one request through the breaker with its own timeout. 4xx answers are the caller's errors and do
// not count against Keycloak.
func (a *admin) call(ctx context.Context, method, u, ctype string, body io.Reader, tok string) ([]byte, error) {
	var refused error
	b, err := a.breaker.Execute(func() ([]byte, error) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(cctx, method, u, body)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Accept", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := a.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", errCallerGone, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		switch {
		case res.StatusCode >= 500:
			return nil, fmt.Errorf("%w: %d", ErrKeycloak, res.StatusCode)
		case res.StatusCode >= 400:
			refused = &statusError{code: res.StatusCode, msg: errorText(b)}
			return nil, nil
		}
		return b, nil
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, fmt.Errorf("%w: breaker open", ErrUnreachable)
	}
	if err != nil {
		return nil, err
	}
	if refused != nil {
		var se *statusError
		if errors.As(refused, &se) {
			switch se.code {
			case http.StatusNotFound:
				return nil, fmt.Errorf("%w: %w", errNotFound, refused)
			}
		}
		return nil, refused
	}
	return b, nil
}

// errorText is Keycloak's error message, short, never the body whole (it could echo what was sent).
func errorText(b []byte) string {
	var e struct {
		Error            string `json:"error"`
		ErrorMessage     string `json:"errorMessage"`
		ErrorDescription string `json:"error_description"`
	}
	_ = json.Unmarshal(b, &e)
	msg := strings.TrimSpace(e.ErrorMessage + " " + e.Error + " " + e.ErrorDescription)
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}
