package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/token"
)

// Path is where the portal listener serves the handler (POST only).
const Path = "/oauth/revoke"

// Discovery tells the handler the issuer's endpoints; *capability.OIDCDiscovery is the real one.
type Discovery interface {
	Discover(ctx context.Context, issuer string) (*capability.Endpoints, error)
}

// Recorder records a revoked token; *Store is the real one.
type Recorder interface {
	RevokeToken(ctx context.Context, t Token, actor, reason string) error
}

var (
	_ Discovery = (*capability.OIDCDiscovery)(nil)
	_ Recorder  = (*Store)(nil)
)

// HandlerConfig is what the RFC 7009 endpoint needs.
type HandlerConfig struct {
	// Issuer is the identity provider whose tokens are revoked (issuers[0].url): its revocation_endpoint,
	// from its discovery document, authenticates the client and revokes the token there.
	Issuer    string
	Discovery Discovery
	// Verifier is the gateway's token verifier (the *token.Verifier, before Wrap): a token it accepts is the
	// one recorded as revoked; one it refuses could not be used at the gateway anyway.
	Verifier Verifier
	Store    Recorder
	// HTTPClient calls the issuer (default: a client with a 5 s timeout).
	HTTPClient *http.Client
	// PerMinute bounds requests per client IP address per minute (default 60); a refusal is 429.
	PerMinute int
	Log       *slog.Logger
}

// Handler is RFC 7009 token revocation for fhirwall's clients: the issuer authenticates the client and
// revokes the token, and fhirwall records the token as revoked so that every replica of the gateway refuses
// it within a second (Keycloak's own revocation is not seen by a gateway that verifies JWTs locally).
type Handler struct {
	cfg      HandlerConfig
	limiters *lru.Cache[string, *rate.Limiter]
	perIP    rate.Limit
	burst    int
}

// maxIssuerAnswerBytes bounds what is read of the issuer's answer.
const maxIssuerAnswerBytes = 64 << 10

// NewHandler checks cfg and returns the handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Issuer == "" || cfg.Discovery == nil || cfg.Verifier == nil || cfg.Store == nil {
		return nil, errors.New("revocation: the handler needs an issuer, its discovery, the verifier and the store")
	}
	if cfg.PerMinute < 0 {
		return nil, errors.New("revocation: per-minute limit must not be negative")
	}
	if cfg.PerMinute == 0 {
		cfg.PerMinute = 60
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	limiters, err := lru.New[string, *rate.Limiter](10_000)
	if err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, limiters: limiters, perIP: rate.Limit(float64(cfg.PerMinute) / 60),
		burst: max(1, cfg.PerMinute/6)}, nil
}

// ServeHTTP answers as RFC 7009 §2.2: 200 with an empty body once the token is revoked, or when it was
// invalid to begin with; §2.2.1 errors otherwise. Every answer is no-store.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", description: "use POST"})
		return
	}
	if !h.allow(clientIP(r)) {
		w.Header().Set("Retry-After", "10")
		writeError(w, &oauthError{status: http.StatusTooManyRequests, code: "invalid_request", description: "too many requests"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeError(w, &oauthError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", description: "request too large"})
		return
	}
	req, err := parseRequest(r.Header.Get("Content-Type"), r.Header.Values("Authorization"), body)
	if err != nil {
		var oe *oauthError
		errors.As(err, &oe)
		writeError(w, oe)
		return
	}
	if oe := h.forward(r.Context(), req); oe != nil {
		writeError(w, oe)
		return
	}
	if oe := h.record(r.Context(), req); oe != nil {
		writeError(w, oe)
		return
	}
	w.WriteHeader(http.StatusOK)
}

var unavailable = &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
	description: "the token could not be revoked now; try again"}

// forward sends the request, the client's authentication included, to the issuer's revocation endpoint,
// which authenticates the client and refuses a token that is not the client's (RFC 7009 §2.1).
func (h *Handler) forward(ctx context.Context, req request) *oauthError {
	ep, err := h.cfg.Discovery.Discover(ctx, h.cfg.Issuer)
	if err != nil || ep.RevocationEndpoint == "" {
		h.cfg.Log.Error("token revocation: the issuer's revocation endpoint is unknown", "issuer", h.cfg.Issuer, "error", err)
		return unavailable
	}
	up, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.RevocationEndpoint, strings.NewReader(req.forwardedFields.Encode()))
	if err != nil {
		return unavailable
	}
	up.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	up.Header.Set("Accept", "application/json")
	if req.basic != "" {
		up.Header.Set("Authorization", req.basic)
	}
	resp, err := h.cfg.HTTPClient.Do(up)
	if err != nil {
		h.cfg.Log.Error("token revocation: the issuer did not answer", "issuer", h.cfg.Issuer, "error", err)
		return unavailable
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxIssuerAnswerBytes))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		h.cfg.Log.Warn("token revocation: the issuer failed", "issuer", h.cfg.Issuer, "status", resp.StatusCode)
		return unavailable
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(answer, &e)
	h.cfg.Log.Info("token revocation refused by the issuer", "client_id", req.clientID, "status", resp.StatusCode, "error", e.Error)
	switch e.Error {
	case "invalid_client":
		return badClient("client authentication failed")
	case "unauthorized_client":
		return &oauthError{status: http.StatusBadRequest, code: e.Error, description: "the token was not issued to this client"}
	case "unsupported_token_type":
		return &oauthError{status: http.StatusBadRequest, code: e.Error, description: "this token type cannot be revoked"}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return badClient("client authentication failed")
	}
	return badRequest("the authorization server refused the request")
}

// record makes the gateway refuse the token: once the issuer revoked it, the token, if the gateway would
// accept it and it is the authenticated client's, is recorded until it expires.
func (h *Handler) record(ctx context.Context, req request) *oauthError {
	id, err := h.cfg.Verifier.Verify(ctx, req.token)
	switch {
	case errors.Is(err, token.ErrUnavailable):
		h.cfg.Log.Error("token revocation: the token could not be checked; the gateway may still accept it", "client_id", req.clientID, "error", err)
		return unavailable
	case err != nil:
		return nil // refused at the gateway anyway (expired, a refresh token, another audience …): nothing to deny
	case id.ClientID != req.clientID:
		h.cfg.Log.Warn("token revocation: the issuer revoked another client's token; not recorded", "client_id", req.clientID)
		return nil
	}
	t := Token{JTI: id.JTI, ClientID: id.ClientID, Subject: id.Subject, ExpiresAt: id.Expiry}
	if t.JTI == "" {
		t.JTI = TokenKey(req.token)
	}
	if t.ExpiresAt.IsZero() { // an introspected token without exp: the verifier trusts it at most this long
		t.ExpiresAt = time.Now().Add(token.MaxCacheTTL)
	}
	if err := h.cfg.Store.RevokeToken(context.WithoutCancel(ctx), t, "client:"+req.clientID, "RFC 7009 token revocation"); err != nil {
		h.cfg.Log.Error("token revocation: not recorded; the gateway may still accept the token", "client_id", req.clientID, "error", err)
		return unavailable
	}
	return nil
}

func (h *Handler) allow(ip string) bool {
	l, ok := h.limiters.Get(ip)
	if !ok {
		l = rate.NewLimiter(h.perIP, h.burst)
		if prev, found, _ := h.limiters.PeekOrAdd(ip, l); found {
			l = prev
		}
	}
	return l.Allow()
}

// clientIP is the rate limit's key for the peer: the portal listener faces clients directly, so no
// forwarded header is believed. An IPv4 address (IPv4-mapped ones too) is itself; an IPv6 address counts as
// its /64, which one host commonly holds whole (a key per address would be no limit). An address that does
// not parse is its own key.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

func writeError(w http.ResponseWriter, e *oauthError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="fhirwall"`)
	}
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.code, e.description})
}
