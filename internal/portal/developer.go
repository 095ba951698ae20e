package portal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// owner is the Owner of the apps a portal user registers.
func owner(s *session) string { return "portal:" + s.Subject }

// actorDeveloper and actorReviewer name the portal user in an app's history and the audit stream.
func actorDeveloper(s *session) string { return "portal:" + s.Username }
func actorReviewer(s *session) string  { return "reviewer:" + s.Username }

func (h *handler) myApps(w http.ResponseWriter, r *http.Request, s *session) {
	all, err := h.store.List(r.Context())
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	mine := slices.DeleteFunc(all, func(a apps.App) bool { return a.Owner != owner(s) })
	h.render(w, r, http.StatusOK, "apps", "My apps", mine)
}

// ownApp is the developer's own app; any other (someone else's, or none) is the same 404.
func (h *handler) ownApp(w http.ResponseWriter, r *http.Request, s *session) (apps.App, bool) {
	a, err := h.store.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, apps.ErrNotFound) || (err == nil && a.Owner != owner(s)) {
		h.fail(w, r, http.StatusNotFound, "There is no such app.")
		return apps.App{}, false
	}
	if err != nil {
		h.storeFailed(w, r, err)
		return apps.App{}, false
	}
	return a, true
}

// registerForm is what the registration page shows (again, with the problems, when refused).
type registerForm struct {
	Name, Org, Email, RedirectURIs, AuthMethod, JWKSURI, JWKS string
	Launch                                                    []string
	APIs                                                      []string
	Scopes                                                    map[string][]string // per API, ticked
	Offered                                                   []offeredAPI
	Problems                                                  []string
}

type offeredAPI struct {
	Name   string
	Scopes []string
}

func (h *handler) offeredList() []offeredAPI {
	var out []offeredAPI
	for _, a := range h.apis {
		if sc, ok := h.offered[a.Name]; ok {
			out = append(out, offeredAPI{Name: a.Name, Scopes: sc})
		}
	}
	return out
}

func (h *handler) newAppForm(w http.ResponseWriter, r *http.Request, s *session) {
	h.render(w, r, http.StatusOK, "newapp", "Register a sandbox app",
		registerForm{AuthMethod: apps.AuthNone, Launch: []string{apps.LaunchStandalone}, Offered: h.offeredList()})
}

// lines splits a textarea into its non-empty trimmed lines.
func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// appFromForm reads the registration form; every problem is the registration policy's to report.
func (h *handler) appFromForm(r *http.Request) (registerForm, apps.App) {
	f := registerForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Org: strings.TrimSpace(r.PostForm.Get("org")),
		Email: strings.TrimSpace(r.PostForm.Get("email")), RedirectURIs: r.PostForm.Get("redirect_uris"),
		AuthMethod: r.PostForm.Get("auth_method"), JWKSURI: strings.TrimSpace(r.PostForm.Get("jwks_uri")),
		JWKS: strings.TrimSpace(r.PostForm.Get("jwks")), Launch: r.PostForm["launch"], APIs: r.PostForm["api"],
		Scopes: map[string][]string{}, Offered: h.offeredList()}
	a := apps.App{Name: f.Name, DeveloperOrg: f.Org, Contacts: []apps.Contact{{Email: f.Email, Role: "technical"}},
		RedirectURIs: lines(f.RedirectURIs), LaunchTypes: f.Launch, TokenAuthMethod: f.AuthMethod,
		RequestedAPIs: f.APIs, Tier: "standard"}
	if f.AuthMethod == apps.AuthPrivateKeyJWT {
		a.JWKSURI = f.JWKSURI
		if f.JWKS != "" {
			a.JWKS = json.RawMessage(f.JWKS)
		}
	}
	for _, api := range h.offeredList() {
		ticked := r.PostForm["scope:"+api.Name]
		f.Scopes[api.Name] = ticked
		if !slices.Contains(f.APIs, api.Name) {
			continue
		}
		for _, sc := range ticked {
			if !slices.Contains(a.RequestedScopes, sc) {
				a.RequestedScopes = append(a.RequestedScopes, sc)
			}
		}
	}
	return f, a
}

// problems lists each reason of a refusal (the registration policy's Problems) on its own line.
func problems(err error) []string {
	var out []string
	for _, p := range apps.Problems(err) {
		out = append(out, p.Detail)
	}
	if len(out) == 0 && err != nil { // a store's own refusal, not the policy's: one line each
		for l := range strings.Lines(err.Error()) {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// newClientID is a client id nobody chose: "app-" and 16 letters and digits.
func newClientID() string { return "app-" + strings.ToLower(rand.Text()[:16]) }

func confidential(method string) bool {
	return method == apps.AuthClientSecretBasic || method == apps.AuthClientSecretPost
}

// credentials is the page that shows a client id and, for a confidential client, its secret: once.
type credentials struct {
	App     apps.App
	Secret  string
	Heading string
}

func (h *handler) registerApp(w http.ResponseWriter, r *http.Request, s *session) {
	f, a := h.appFromForm(r)
	a.ClientID, a.Owner = newClientID(), owner(s)
	// Sandbox: synthetic data only, so approved as requested at once (issue 16 item 3).
	a.Environment, a.State = apps.Sandbox, apps.StateActive
	a.ApprovedAPIs, a.ApprovedScopes = slices.Clone(a.RequestedAPIs), slices.Clone(a.RequestedScopes)
	if err := apps.ValidateRegistration(a, h.offered); err != nil {
		f.Problems = problems(err)
		h.render(w, r, http.StatusUnprocessableEntity, "newapp", "Register a sandbox app", f)
		return
	}
	var issued apps.Issued
	if confidential(a.TokenAuthMethod) {
		issued.ClientSecret = rand.Text() + rand.Text()
	}
	out, err := h.store.Register(r.Context(), a, actorDeveloper(s), "registered in the developer portal (sandbox)", issued)
	if err != nil {
		if errors.Is(err, apps.ErrInvalid) {
			f.Problems = problems(err)
			h.render(w, r, http.StatusUnprocessableEntity, "newapp", "Register a sandbox app", f)
			return
		}
		h.storeFailed(w, r, err)
		return
	}
	h.log.Info("portal: app registered", "client_id", out.ClientID, "actor", actorDeveloper(s))
	noStore(w)
	h.render(w, r, http.StatusCreated, "credentials", "Your app's credentials",
		credentials{App: out, Secret: issued.ClientSecret, Heading: "Sandbox app registered"})
}

// appDetail is the developer's page of one app.
type appDetail struct {
	App        apps.App
	History    []apps.Event
	Sync       *apps.SyncState
	SyncError  string
	CanRotate  bool
	CanPromote bool
}

func (h *handler) myApp(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := h.ownApp(w, r, s)
	if !ok {
		return
	}
	d := h.detail(r.Context(), a)
	d.CanRotate = confidential(a.TokenAuthMethod) && a.State != apps.StateDeactivated && h.idp != nil
	d.CanPromote = a.Environment == apps.Sandbox && a.State != apps.StateDeactivated
	h.render(w, r, http.StatusOK, "app", a.Name, d)
}

func (h *handler) detail(ctx context.Context, a apps.App) appDetail {
	d := appDetail{App: a}
	d.History, _ = h.store.History(ctx, a.ClientID)
	if st, err := h.store.Sync(ctx, a.ClientID); err == nil {
		d.Sync = &st
	} else if errors.Is(err, errors.ErrUnsupported) {
		d.SyncError = "this registry does not sync an identity provider"
	} else {
		d.SyncError = "unknown (the registry did not answer)"
	}
	return d
}

func (h *handler) rotateSecret(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := h.ownApp(w, r, s)
	if !ok {
		return
	}
	if !confidential(a.TokenAuthMethod) {
		h.fail(w, r, http.StatusConflict, "This app has no client secret to rotate.")
		return
	}
	if a.State == apps.StateDeactivated {
		h.fail(w, r, http.StatusConflict, "This app is deactivated.")
		return
	}
	if h.idp == nil {
		h.fail(w, r, http.StatusServiceUnavailable, "Secret rotation is unavailable: no identity provider is configured.")
		return
	}
	secret, err := h.idp.RotateSecret(r.Context(), a.ClientID, h.overlap)
	if err != nil {
		h.log.Warn("portal: rotate secret failed", "client_id", a.ClientID, "err", err)
		h.fail(w, r, http.StatusBadGateway, "The identity provider could not rotate the secret; the old one still works. Try again.")
		return
	}
	h.log.Info("portal: secret rotated", "client_id", a.ClientID, "actor", actorDeveloper(s))
	noStore(w)
	h.render(w, r, http.StatusOK, "credentials", "New client secret",
		credentials{App: a, Secret: secret, Heading: "Client secret rotated; the previous one works for " + h.overlap.String() + " more"})
}

// requestProduction registers a production twin of a sandbox app, pending a reviewer.
func (h *handler) requestProduction(w http.ResponseWriter, r *http.Request, s *session) {
	a, ok := h.ownApp(w, r, s)
	if !ok {
		return
	}
	if a.Environment != apps.Sandbox || a.State == apps.StateDeactivated {
		h.fail(w, r, http.StatusConflict, "Only a sandbox app that is not deactivated can ask for production.")
		return
	}
	p := a
	p.ClientID = a.ClientID + "-prod"
	if len(p.ClientID) > 128 {
		p.ClientID = newClientID()
	}
	p.Environment, p.State = apps.Production, apps.StatePending
	p.ApprovedAPIs, p.ApprovedScopes = nil, nil
	p.Version, p.CreatedAt, p.UpdatedAt = 0, h.now(), h.now()
	var issued apps.Issued
	if confidential(p.TokenAuthMethod) {
		issued.ClientSecret = rand.Text() + rand.Text()
	}
	if err := apps.ValidateRegistration(p, h.offered); err != nil {
		h.fail(w, r, http.StatusUnprocessableEntity, "The app cannot ask for production: "+strings.Join(problems(err), "; "))
		return
	}
	out, err := h.store.Register(r.Context(), p, actorDeveloper(s), "production requested in the developer portal for "+a.ClientID, issued)
	if errors.Is(err, apps.ErrExists) {
		h.fail(w, r, http.StatusConflict, "Production was already requested for this app ("+p.ClientID+").")
		return
	}
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	h.log.Info("portal: production requested", "client_id", out.ClientID, "actor", actorDeveloper(s))
	noStore(w)
	h.render(w, r, http.StatusCreated, "credentials", "Production requested",
		credentials{App: out, Secret: issued.ClientSecret, Heading: "Production requested: a reviewer will approve it"})
}

func (h *handler) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, apps.ErrNotFound):
		h.fail(w, r, http.StatusNotFound, "There is no such app.")
	case errors.Is(err, apps.ErrConflict):
		h.fail(w, r, http.StatusConflict, "The app changed meanwhile; reload and try again.")
	case errors.Is(err, apps.ErrTransition):
		h.fail(w, r, http.StatusConflict, "That state change is not allowed from the app's current state.")
	case errors.Is(err, apps.ErrInvalid):
		h.fail(w, r, http.StatusUnprocessableEntity, strings.Join(problems(err), "; "))
	case errors.Is(err, apps.ErrAuditFailed):
		h.log.Error("portal: audit failed", "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, "The change could not be audited, so nothing changed. Try again shortly.")
	default:
		h.log.Error("portal: registry", "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, "The app registry did not answer. Try again shortly.")
	}
}
