// Package dcr is Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592) for the app
// registry: an app registers itself anonymously at POST /register and is, always, a sandbox app, active at
// once with what it asked for; it reads, replaces and deletes its registration with the registration access
// token it was given. Every registration is judged by the registry's policy (apps.ValidateRegistration) and
// every change goes through an apps.Store, which audits it before it commits.
package dcr

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
)

//	POST   /register              register (RFC 7591 §3.1): 201 with the client information, credentials once
//	GET    /register/{client_id}  read (RFC 7592 §2.1), with Authorization: Bearer <registration access token>
//	PUT    /register/{client_id}  replace the metadata (RFC 7592 §2.2)
//	DELETE /register/{client_id}  deactivate the app (RFC 7592 §2.3): 204

// MaxBody bounds a request body: client metadata with an inline JWKS and a software statement is far less.
const MaxBody = 64 << 10

// Actor is who registers an anonymous app (its Event's actor and the app's Owner); changes through RFC 7592
// are made by "dcr:<client_id>", the registrant holding the app's registration access token.
const Actor = "dcr"

// Reasons recorded with the changes.
const (
	ReasonRegister = "sandbox: approved at registration (anonymous Dynamic Client Registration, RFC 7591; synthetic data only)"
	ReasonUpdate   = "updated by its registrant (RFC 7592)"
	ReasonDelete   = "deleted by its registrant (RFC 7592)"
)

// DefaultPerMinute is the rate limit per client address when Options.PerMinute is 0.
const DefaultPerMinute = 10

// Options configure the endpoint.
type Options struct {
	// PublicURL is the origin the portal listener is reached at (config portal.public_url), e.g.
	// https://portal.example; registration_client_uri is PublicURL + "/register/" + client_id. https, or http
	// on a loopback host (tests).
	PublicURL string
	// PerMinute bounds the calls (every route) per client address a minute (0: DefaultPerMinute). Over it: 429
	// with Retry-After. Without Counter, a token bucket in this process that holds a minute's worth; with it,
	// the calls of every replica in each clock minute.
	PerMinute int
	// Counter, when set, counts the calls per address where every replica sees them (the registry's
	// PostgreSQL: postgres.Store), so N replicas do not allow N times the limit. A counter that cannot answer
	// refuses the call (503): the limit fails closed.
	Counter Counter
	// TrustedRegistrars are JSON Web Key Sets (each the content of one portal.dcr.trusted_registrars file)
	// whose public keys may sign software statements (RFC 7591 §2.3). None: every statement is
	// unapproved_software_statement.
	TrustedRegistrars [][]byte
	// Now is the clock (nil: time.Now): rate limits and software statements' exp, nbf and iat.
	Now func() time.Time
	// Log records what was registered, changed and refused for the server's own failures; never a secret.
	Log *slog.Logger
}

type handler struct {
	store      apps.Store
	offered    map[string][]string
	publicURL  string
	registrars registrars
	limit      callLimit
	now        func() time.Time
	log        *slog.Logger
}

// New returns the handler of POST /register and GET, PUT, DELETE /register/{client_id}, to be mounted at the
// root of the portal listener. offered is, per API, the scopes the API offers (config.OfferedScopes): an app
// asks for the APIs whose offers cover the resource scopes it requests. An API named "<base>-sandbox" beside
// its base is left out: a sandbox app carries its base API's name and is sent to the sandbox by the gateway.
func New(store apps.Store, offered map[string][]string, opts Options) (http.Handler, error) {
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("dcr: a store is required"))
	}
	if opts.Log == nil {
		errs = append(errs, errors.New("dcr: a logger is required"))
	}
	offered = bases(offered)
	if len(offered) == 0 {
		errs = append(errs, errors.New("dcr: no API offers scopes: nothing could be registered"))
	}
	publicURL, err := publicBase(opts.PublicURL)
	if err != nil {
		errs = append(errs, err)
	}
	if opts.PerMinute < 0 {
		errs = append(errs, fmt.Errorf("dcr: per_minute %d: want 0 (default %d) or more", opts.PerMinute, DefaultPerMinute))
	}
	regs, err := parseRegistrars(opts.TrustedRegistrars)
	if err != nil {
		errs = append(errs, fmt.Errorf("dcr: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	perMinute := opts.PerMinute
	if perMinute == 0 {
		perMinute = DefaultPerMinute
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	h := &handler{store: store, offered: offered, publicURL: publicURL, registrars: regs,
		limit: newLimiter(perMinute), now: now, log: opts.Log}
	if opts.Counter != nil {
		h.limit = &sharedLimit{counter: opts.Counter, perMinute: perMinute}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /register", h.register)
	mux.HandleFunc("GET /register/{client_id}", h.read)
	mux.HandleFunc("PUT /register/{client_id}", h.update)
	mux.HandleFunc("DELETE /register/{client_id}", h.delete)
	return h.limited(mux), nil
}

// bases drops the sandbox APIs ("<base>-sandbox" beside "<base>", config.SandboxSuffix) from offered.
func bases(offered map[string][]string) map[string][]string {
	out := maps.Clone(offered)
	for name := range offered {
		if base, ok := strings.CutSuffix(name, "-sandbox"); ok {
			if _, ok := offered[base]; ok {
				delete(out, name)
			}
		}
	}
	return out
}

func publicBase(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("dcr: public_url %q: want an absolute URL such as https://portal.example", s)
	}
	if u.Scheme != "https" && (u.Scheme != "http" || apps.ValidRedirectURI(s) != nil) {
		return "", fmt.Errorf("dcr: public_url %q: want https (http only on a loopback host)", s)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// limited answers 429 with Retry-After to an address over its rate, before any work.
func (h *handler) limited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, ok, err := h.limit.allow(r.Context(), r.RemoteAddr, h.now())
		if err != nil {
			h.log.Error("dcr: rate limit counter unavailable; refusing", "err", err)
			w.Header().Set("Retry-After", "5")
			h.refuse(w, &Refusal{Status: http.StatusServiceUnavailable, Code: ServerError,
				Description: "registration is unavailable for a moment; retry after the time in Retry-After"})
			return
		}
		if !ok {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
			h.refuse(w, &Refusal{Status: http.StatusTooManyRequests, Code: TooManyRequests,
				Description: "too many registration requests from this address; retry after the time in Retry-After"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Client information response (RFC 7591 §3.2.1, RFC 7592 §3): the registered metadata and what the server
// provisioned. ClientSecret is set once, in the answer to the registration.
type clientInformation struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64 `json:"client_secret_expires_at,omitempty"` // required when the client has a secret; 0: never
	RegistrationAccessToken string `json:"registration_access_token"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	Metadata
}

func (h *handler) information(a apps.App, secret, token string) clientInformation {
	info := clientInformation{ClientID: a.ClientID, ClientSecret: secret, ClientIDIssuedAt: a.CreatedAt.Unix(),
		RegistrationAccessToken: token, RegistrationClientURI: h.publicURL + "/register/" + a.ClientID,
		Metadata: metadataOf(a)}
	if confidential(a.TokenAuthMethod) {
		never := int64(0)
		info.ClientSecretExpiresAt = &never
	}
	return info
}

func confidential(method string) bool {
	return method == apps.AuthClientSecretBasic || method == apps.AuthClientSecretPost
}

func (h *handler) register(w http.ResponseWriter, r *http.Request) {
	members, refusal := readBody(w, r)
	if refusal == nil {
		for _, name := range serverMembers {
			if _, ok := members[name]; ok {
				refusal = refuse(InvalidClientMetadata, "%s is the server's to issue, never the client's to send", name)
				break
			}
		}
	}
	var app apps.App
	if refusal == nil {
		app, refusal = h.registrant(members)
	}
	if refusal != nil {
		h.refuse(w, refusal)
		return
	}
	id, err := randomHex(16)
	if err != nil {
		h.fail(w, "make a client id", err)
		return
	}
	var issued apps.Issued
	if confidential(app.TokenAuthMethod) {
		if issued.ClientSecret, err = randomToken(); err != nil {
			h.fail(w, "make a client secret", err)
			return
		}
	}
	if issued.RegistrationToken, err = randomToken(); err != nil {
		h.fail(w, "make a registration access token", err)
		return
	}
	// An anonymous registration is a sandbox app: synthetic data only, so approved at once for everything it
	// asked for and active from its first event. Production access is a reviewer's (portal, admin API).
	app.ClientID = "dcr-" + id
	app.Environment, app.State, app.Tier, app.Owner = apps.Sandbox, apps.StateActive, ratelimit.DefaultTier, Actor
	app.ApprovedAPIs, app.ApprovedScopes = slices.Clone(app.RequestedAPIs), slices.Clone(app.RequestedScopes)
	if refusal := validate(app, h.offered); refusal != nil {
		h.refuse(w, refusal)
		return
	}
	// The change is the store's to finish once it started: a client hanging up must not leave it half done.
	created, err := h.store.Register(context.WithoutCancel(r.Context()), app, Actor, ReasonRegister, issued)
	if err != nil {
		h.fail(w, "register an app", err)
		return
	}
	h.log.Info("dcr: registered", "client_id", created.ClientID, "environment", string(created.Environment),
		"state", string(created.State), "apis", created.ApprovedAPIs, "software_id", created.SoftwareID)
	write(w, http.StatusCreated, h.information(created, issued.ClientSecret, issued.RegistrationToken))
}

// registrant applies a software statement, if any, over the members (RFC 7591 §2.3: its values take
// precedence) and builds the registrant's part of the app.
func (h *handler) registrant(members map[string]json.RawMessage) (apps.App, *Refusal) {
	if raw, ok := members["software_statement"]; ok {
		var stmt string
		if err := json.Unmarshal(raw, &stmt); err != nil {
			return apps.App{}, refuse(InvalidSoftwareStatement, "software_statement: want a string (a signed JWT)")
		}
		claims, refusal := h.registrars.verify(stmt, h.now())
		if refusal != nil {
			return apps.App{}, refusal
		}
		for name, v := range claims {
			if slices.Contains(serverMembers, name) {
				return apps.App{}, refuse(InvalidSoftwareStatement, "software_statement: %s is the server's to issue", name)
			}
			members[name] = v
		}
	}
	m, refusal := decodeMetadata(members)
	if refusal != nil {
		return apps.App{}, refusal
	}
	return m.registrant(h.offered)
}

// validate judges a whole app by the registry's policy: a problem with one of its redirect URIs is answered
// invalid_redirect_uri (those alone, when there are any), every other invalid_client_metadata, all listed.
func validate(a apps.App, offered map[string][]string) *Refusal {
	err := apps.ValidateRegistration(a, offered)
	if err == nil {
		return nil
	}
	var redirects, others problems
	for _, pr := range apps.Problems(err) {
		if pr.RedirectURI() {
			redirects.add(InvalidRedirectURI, "%s", pr.Detail)
		} else {
			others.add(InvalidClientMetadata, "%s", pr.Detail)
		}
	}
	if r := redirects.refusal(); r != nil {
		return r
	}
	if r := others.refusal(); r != nil {
		return r
	}
	return refuse(InvalidClientMetadata, "%s", strings.TrimSpace(err.Error())) // a refusal without its Problems still refuses
}

func (h *handler) read(w http.ResponseWriter, r *http.Request) {
	app, token, ok := h.authorized(w, r)
	if !ok {
		return
	}
	write(w, http.StatusOK, h.information(app, "", token))
}

func (h *handler) update(w http.ResponseWriter, r *http.Request) {
	cur, token, ok := h.authorized(w, r)
	if !ok {
		return
	}
	members, refusal := readBody(w, r)
	if refusal != nil {
		h.refuse(w, refusal)
		return
	}
	// RFC 7592 §2.2: the client id as issued; none of the server's other members. A client_secret could only
	// be checked against the one issued, which the registry no longer holds: it is refused.
	var id string
	if raw, ok := members["client_id"]; !ok || json.Unmarshal(raw, &id) != nil || id != cur.ClientID {
		h.refuse(w, refuse(InvalidClientMetadata, "client_id: an update names the client it updates, as issued"))
		return
	}
	delete(members, "client_id")
	for _, name := range serverMembers {
		if _, ok := members[name]; ok {
			h.refuse(w, refuse(InvalidClientMetadata, "%s must not be sent in an update (RFC 7592 §2.2)", name))
			return
		}
	}
	if cur.Environment != apps.Sandbox {
		h.refuse(w, &Refusal{Status: http.StatusForbidden, Code: AccessDenied,
			Description: "this app has production access: a reviewer changes it (the developer portal)"})
		return
	}
	if cur.State != apps.StateActive {
		// A reviewer stopped it (abuse, a leaked key): what they reactivate is what they suspended, not what its
		// registrant rewrote meanwhile. Reading and deleting it stay possible.
		h.refuse(w, &Refusal{Status: http.StatusForbidden, Code: AccessDenied,
			Description: "this app is " + string(cur.State) + ": a reviewer decides about it; it cannot be changed until it is active again"})
		return
	}
	if _, ok := members["software_statement"]; cur.SoftwareStatement != "" && !ok {
		h.refuse(w, refuse(InvalidSoftwareStatement, "software_statement: this app was registered with one; an update carries one too"))
		return
	}
	app, refusal := h.registrant(members)
	if refusal != nil {
		h.refuse(w, refusal)
		return
	}
	switch {
	case app.TokenAuthMethod != cur.TokenAuthMethod:
		// A secret is issued once, at registration: a client switching to one would never receive it.
		refusal = refuse(InvalidClientMetadata, "token_endpoint_auth_method: stays %s; register a new client to change it", cur.TokenAuthMethod)
	case cur.SoftwareID != "" && app.SoftwareID != cur.SoftwareID:
		refusal = refuse(InvalidClientMetadata, "software_id: stays %q across updates (RFC 7591 §2)", clip(cur.SoftwareID))
	}
	if refusal != nil {
		h.refuse(w, refusal)
		return
	}
	// The server's fields stay as they are; a sandbox app keeps everything it asks for approved.
	app.ClientID, app.Environment, app.State, app.Tier, app.Owner = cur.ClientID, cur.Environment, cur.State, cur.Tier, cur.Owner
	app.DeveloperOrg, app.ProviderOrg, app.NotifyHosts = cur.DeveloperOrg, cur.ProviderOrg, cur.NotifyHosts
	app.CreatedAt, app.UpdatedAt, app.Version = cur.CreatedAt, cur.UpdatedAt, cur.Version
	app.ApprovedAPIs, app.ApprovedScopes = slices.Clone(app.RequestedAPIs), slices.Clone(app.RequestedScopes)
	if refusal := validate(app, h.offered); refusal != nil {
		h.refuse(w, refusal)
		return
	}
	updated, err := h.store.Update(context.WithoutCancel(r.Context()), app, Actor+":"+cur.ClientID, ReasonUpdate)
	if err != nil {
		h.fail(w, "update an app", err)
		return
	}
	h.log.Info("dcr: updated", "client_id", updated.ClientID, "version", updated.Version)
	write(w, http.StatusOK, h.information(updated, "", token))
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	cur, _, ok := h.authorized(w, r)
	if !ok {
		return
	}
	if _, err := h.store.Transition(context.WithoutCancel(r.Context()), cur.ClientID, apps.StateDeactivated,
		Actor+":"+cur.ClientID, ReasonDelete, nil, nil); err != nil {
		h.fail(w, "deactivate an app", err)
		return
	}
	h.log.Info("dcr: deleted", "client_id", cur.ClientID)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// maxTokenLen bounds a bearer token read from a header: ours are 43 characters.
const maxTokenLen = 512

// authorized checks the registration access token of the path's client (RFC 7592 §2, RFC 6750 §2.1) and
// returns the app and the token. Whatever is wrong (no or malformed header, unknown client, wrong token, an
// app deleted) is the same 401, so the answer never says whether a client exists.
func (h *handler) authorized(w http.ResponseWriter, r *http.Request) (apps.App, string, bool) {
	id := r.PathValue("client_id")
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	unauthorized := func() (apps.App, string, bool) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		h.refuse(w, &Refusal{Status: http.StatusUnauthorized, Code: InvalidToken,
			Description: "send Authorization: Bearer <the registration access token issued with this client>"})
		return apps.App{}, "", false
	}
	if !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > maxTokenLen || !token68(token) || len(id) > 128 {
		return unauthorized()
	}
	if err := h.store.VerifyRegistrationToken(r.Context(), id, token); err != nil {
		if errors.Is(err, apps.ErrUnauthorized) {
			return unauthorized()
		}
		h.fail(w, "verify a registration access token", err)
		return apps.App{}, "", false
	}
	app, err := h.store.Get(r.Context(), id)
	if errors.Is(err, apps.ErrNotFound) || (err == nil && app.State == apps.StateDeactivated) {
		// RFC 7592 §2.3: a deleted client's registration access token is invalid from then on.
		return unauthorized()
	}
	if err != nil {
		h.fail(w, "read an app", err)
		return apps.App{}, "", false
	}
	return app, token, true
}

// token68 reports whether s is an RFC 7235 token68 (what a Bearer token is made of).
func token68(s string) bool {
	s = strings.TrimRight(s, "=")
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~+/", c)) {
			return false
		}
	}
	return s != ""
}

// readBody reads a JSON object of at most MaxBody bytes sent as application/json.
func readBody(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, *Refusal) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, refuse(InvalidClientMetadata, "send the client metadata as Content-Type: application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, refuse(InvalidClientMetadata, "the body is larger than %d bytes", MaxBody)
		}
		return nil, refuse(InvalidClientMetadata, "the body could not be read")
	}
	members, err := parseObject(body)
	if err != nil {
		return nil, refuse(InvalidClientMetadata, "the body is not client metadata: %v", err)
	}
	return members, nil
}

// fail answers a store's error: nothing changed, and the registrant may retry.
func (h *handler) fail(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, apps.ErrConflict):
		h.refuse(w, &Refusal{Status: http.StatusConflict, Code: Conflict,
			Description: "the registration changed while this request was served: read it again (GET) and retry"})
	case errors.Is(err, apps.ErrInvalid):
		// The policy was applied before the store; a store that refuses anyway gets the same answer.
		h.refuse(w, refuse(InvalidClientMetadata, "%s", strings.Join(strings.Fields(err.Error()), " ")))
	case errors.Is(err, apps.ErrAuditFailed):
		h.log.Error("dcr: could not "+what, "err", err)
		h.refuse(w, &Refusal{Status: http.StatusServiceUnavailable, Code: ServerError,
			Description: "the change could not be audited, so nothing changed; retry later"})
	default:
		h.log.Error("dcr: could not "+what, "err", err)
		h.refuse(w, &Refusal{Status: http.StatusInternalServerError, Code: ServerError, Description: "internal error: could not " + what})
	}
}

func (h *handler) refuse(w http.ResponseWriter, r *Refusal) {
	write(w, r.Status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{r.Code, r.Description})
}

func write(w http.ResponseWriter, status int, v any) {
	b, err := encode(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error","error_description":"could not encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	// RFC 7591 §3.2.1: the answer holds credentials.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// randomToken is 32 random bytes, base64url without padding (43 characters).
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
