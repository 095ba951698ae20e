// Package portal is fhirwall's developer portal, reviewer console and member page: server-rendered pages
// (html/template, no script) on the portal's own HTTPS listener, signed in through the identity provider
// with OIDC, over the app registry (apps.Store) and the identity provider's admin port (apps.IdP).
package portal

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/seal"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Revoker ends a member's grant to an app at the gateway (adapters/registry/revocation): the member's
// tokens for the app stop working on every replica. actor goes into the audit record.
type Revoker interface {
	RevokeGrant(ctx context.Context, subject, clientID, actor string) error
}

// DocsFunc returns an API's CapabilityStatement and SMART discovery document (JSON) as fhirwall serves them.
type DocsFunc func(ctx context.Context, api string) (capability, smartConfig []byte, err error)

// Options are everything the portal uses; each is injected so tests can use fakes.
type Options struct {
	Store   apps.Store // required
	IdP     apps.IdP   // nil: rotation and the member page answer "unavailable"
	Revoker Revoker    // nil: member revocation answers "unavailable"
	// Offered is config.OfferedScopes(): per API, the scopes an app may request.
	Offered map[string][]string
	APIs    []config.API
	Docs    DocsFunc // nil: documentation pages say it is unavailable
	Status  *Status  // nil: status pages show notices only
	Notices []config.Notice
	OIDC    OIDC
	// PublicURL is the portal's https origin; the redirect URI is PublicURL+"/auth/callback" and every POST's
	// Origin (or Referer) must be it.
	PublicURL string
	// SessionKeys seal the session and login cookies (seal.LoadKeyring of portal.session_key_file: the first
	// key seals, every key opens). SessionKey, a single 32-byte key, is used when SessionKeys is nil.
	SessionKeys   *seal.Keyring
	SessionKey    []byte
	ReviewerRole  string // default config.DefaultReviewerRole
	DeveloperRole string // default config.DefaultDeveloperRole
	SecretOverlap time.Duration
	Now           func() time.Time
	Log           *slog.Logger
}

type handler struct {
	store                       apps.Store
	idp                         apps.IdP
	revoker                     Revoker
	offered                     map[string][]string
	apis                        []config.API
	docs                        DocsFunc
	status                      *Status
	notices                     []config.Notice
	auth                        *signIn
	seal                        *sealer
	publicURL                   string
	reviewerRole, developerRole string
	overlap                     time.Duration
	now                         func() time.Time
	log                         *slog.Logger
	pages                       map[string]*template.Template
}

// New builds the portal's handler; it refuses missing or unusable options.
func New(o Options) (http.Handler, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("portal: a Store is required"))
	}
	u, err := url.Parse(o.PublicURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		errs = append(errs, fmt.Errorf("portal: PublicURL %q: want an https origin", o.PublicURL))
	}
	if o.OIDC.IssuerURL == "" || o.OIDC.ClientID == "" || o.OIDC.ClientSecret == "" {
		errs = append(errs, errors.New("portal: OIDC needs the issuer URL, client id and client secret"))
	}
	sealer := &sealer{keys: o.SessionKeys}
	if o.SessionKeys == nil {
		if sealer, err = newSealer(o.SessionKey); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pub := strings.TrimSuffix(o.PublicURL, "/")
	h := &handler{store: o.Store, idp: o.IdP, revoker: o.Revoker, offered: o.Offered, apis: o.APIs, docs: o.Docs,
		status: o.Status, notices: slices.Clone(o.Notices), seal: sealer, publicURL: pub,
		reviewerRole: o.ReviewerRole, developerRole: o.DeveloperRole, overlap: o.SecretOverlap, now: o.Now, log: o.Log,
		auth: &signIn{cfg: o.OIDC, redirectURL: pub + "/auth/callback"}}
	if h.reviewerRole == "" {
		h.reviewerRole = config.DefaultReviewerRole
	}
	if h.developerRole == "" {
		h.developerRole = config.DefaultDeveloperRole
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return h.routes(), nil
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/portal.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.ServeFileFS(w, r, assets, "static/portal.css")
	})
	mux.HandleFunc("GET /{$}", h.home)
	mux.HandleFunc("GET /auth/login", h.login)
	mux.HandleFunc("GET /auth/callback", h.callback)
	mux.HandleFunc("POST /auth/logout", h.logoutGuard(h.logout))
	mux.HandleFunc("GET /docs/{api}", h.docsPage)
	mux.HandleFunc("GET /status", h.statusPage)
	mux.HandleFunc("GET /status/{api}", h.statusAPIPage)
	mux.HandleFunc("GET /notices", h.noticesPage)
	mux.HandleFunc("GET /notices.atom", h.noticesAtom)

	dev := func(f func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
		return h.role(h.developerRole, f)
	}
	mux.HandleFunc("GET /apps", dev(h.myApps))
	mux.HandleFunc("GET /apps/new", dev(h.newAppForm))
	mux.HandleFunc("POST /apps/new", h.post(dev(h.registerApp)))
	mux.HandleFunc("GET /apps/{id}", dev(h.myApp))
	mux.HandleFunc("POST /apps/{id}/rotate", h.post(dev(h.rotateSecret)))
	mux.HandleFunc("POST /apps/{id}/production", h.post(dev(h.requestProduction)))

	rev := func(f func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
		return h.role(h.reviewerRole, f)
	}
	mux.HandleFunc("GET /review", rev(h.reviewList))
	mux.HandleFunc("GET /review/apps/{id}", rev(h.reviewApp))
	mux.HandleFunc("POST /review/apps/{id}/{action}", h.post(rev(h.reviewAction)))

	mux.HandleFunc("GET /me/apps", h.role("", h.memberApps))
	mux.HandleFunc("POST /me/apps/{id}/revoke", h.post(h.role("", h.memberRevoke)))

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			h.fail(w, r, http.StatusMethodNotAllowed, "Method not allowed.")
			return
		}
		h.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	return securityHeaders(mux, h.auth.cfg.IssuerURL)
}

// securityHeaders: no script at all, no framing, no sniffing, no referrer beyond the origin. Forms post to
// the portal only, and may be redirected on to the issuer (sign-out ends the issuer's session too).
func securityHeaders(next http.Handler, issuer string) http.Handler {
	formAction := "'self'"
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	csp := "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action " + formAction
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

// currentSession is the signed-in user, or nil (no cookie, tampered, another key, expired).
func (h *handler) currentSession(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	var s session
	if h.seal.open(sessionCookie, c.Value, &s) != nil || s.Subject == "" || s.CSRF == "" || !h.now().Before(s.Expires) {
		return nil
	}
	return &s
}

func (s *session) has(role string) bool { return s != nil && slices.Contains(s.Roles, role) }

// role serves f to a signed-in user holding role ("" any signed-in user); anonymous users are sent to sign
// in (a GET) or refused (anything else), others get a 403 page.
func (h *handler) role(role string, f func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.currentSession(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/auth/login?"+url.Values{"return": {r.URL.RequestURI()}}.Encode(), http.StatusFound)
				return
			}
			h.fail(w, r, http.StatusUnauthorized, "Sign in first.")
			return
		}
		if role != "" && !s.has(role) {
			h.fail(w, r, http.StatusForbidden, "This page is not for your role.")
			return
		}
		f(w, r, s)
	}
}

// post checks a state-changing request: it comes from a page of this origin (Origin, else Referer) and
// carries the session's CSRF token (compared in constant time). Sign-in is checked after, by role.
func (h *handler) post(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
		if !h.sameOrigin(r) {
			h.fail(w, r, http.StatusForbidden, "Refused: this request did not come from a page of the portal.")
			return
		}
		s := h.currentSession(r)
		if s == nil {
			h.fail(w, r, http.StatusUnauthorized, "Sign in first.")
			return
		}
		if err := r.ParseForm(); err != nil {
			h.fail(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.CSRF)) != 1 {
			h.fail(w, r, http.StatusForbidden, "Refused: the form is stale or was not made by the portal. Reload the page and try again.")
			return
		}
		next(w, r)
	}
}

// logoutGuard: signing out needs no session (an expired one signs out too), but one that exists must send
// its CSRF token, so no other site can sign a user out.
func (h *handler) logoutGuard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.currentSession(r) == nil {
			if !h.sameOrigin(r) {
				h.fail(w, r, http.StatusForbidden, "Refused: this request did not come from a page of the portal.")
				return
			}
			clearCookie(w, sessionCookie)
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		h.post(next)(w, r)
	}
}

func (h *handler) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == h.publicURL
	}
	ref := r.Header.Get("Referer")
	return ref == h.publicURL || strings.HasPrefix(ref, h.publicURL+"/")
}

// page is what every template gets.
type page struct {
	Title     string
	Session   *session
	Developer bool
	Reviewer  bool
	CSRF      string
	APIs      []string
	Data      any
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	t, ok := h.pages[name]
	if !ok {
		panic("portal: no page " + name)
	}
	s := h.currentSession(r)
	p := page{Title: title, Session: s, Developer: s.has(h.developerRole), Reviewer: s.has(h.reviewerRole), Data: data}
	if s != nil {
		p.CSRF = s.CSRF
	}
	for _, a := range h.apis {
		p.APIs = append(p.APIs, a.Name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		h.log.Error("portal: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "private, no-cache")
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail is every refusal the user sees: a page with the status and one sentence.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", http.StatusText(status), struct {
		Status  int
		Message string
	}{status, msg})
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"join":  strings.Join,
		"list3": func(a, b, c string) []string { return []string{a, b, c} },
		"has":   func(xs []string, x string) bool { return slices.Contains(xs, x) },
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"pct": func(f float64) string { return fmt.Sprintf("%.2f %%", 100*f) },
		"ms":  func(f float64) string { return fmt.Sprintf("%.1f ms", 1000*f) },
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("portal: template %s: %w", n, err)
		}
		out[base] = t
	}
	return out, nil
}

// noStore marks an answer that shows a credential: no cache may keep it.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}
