// Package admin is the app registry's admin HTTP API, served on fhirwall-proxy's admin listener under
// /admin/apps/: reviewers register apps, approve them (narrowing what they asked for), switch them on and off
// and read their history. `fhirwall apps` is its client. Every change goes through an apps.Store, which
// audits it before it commits.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"unicode"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/adminauth"
	"github.com/fhirwall/fhirwall/internal/decision"
)

//	GET  /admin/apps/                 every app, by client id
//	POST /admin/apps/                 register: a Registration (sandbox: active at once; production: pending)
//	GET  /admin/apps/{id}             one app
//	PUT  /admin/apps/{id}             update: a Registration naming the version it read
//	POST /admin/apps/{id}/approve     an Approval (may narrow the requested APIs and scopes, never widen)
//	POST /admin/apps/{id}/activate    a Review; likewise suspend, reactivate, deactivate (those two need a reason)
//	GET  /admin/apps/{id}/history     the app's events, oldest first
//
// Every call carries `Authorization: Bearer <token>`, the content of admin.token_file.

// MinTokenBytes is the shortest admin token New accepts.
const MinTokenBytes = adminauth.MinTokenBytes

// MaxBody bounds a request body: an app with an inline JWKS of a few keys is far less.
const MaxBody = 256 << 10

// Registration is the body of a register or an update: the app as the registrant describes it, and the
// reviewer who enters it. The lifecycle's fields (state, approved APIs and scopes, times) are not the
// registrant's to set.
type Registration struct {
	apps.App
	Reviewer string `json:"reviewer"`
	Reason   string `json:"reason,omitempty"`
}

// Review is the body of activate, suspend, reactivate and deactivate.
type Review struct {
	Reviewer string `json:"reviewer"`
	Reason   string `json:"reason,omitempty"`
}

// Approval is the body of approve: APIs and Scopes, when given, narrow what the app requested (nil: all of
// it); they may never name what it did not request.
type Approval struct {
	Reviewer string   `json:"reviewer"`
	Reason   string   `json:"reason,omitempty"`
	APIs     []string `json:"apis,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
}

// Error is the body of every refusal.
type Error struct {
	Error string `json:"error"`
}

// SandboxReason is recorded with a sandbox app's approval and activation, which follow its registration at once.
const SandboxReason = "sandbox: approved at once (synthetic data only)"

// action is one lifecycle step a reviewer asks for by name.
type action struct {
	to           apps.State
	from         apps.State // the state the step starts from ("" any the lifecycle allows)
	needsReason  bool
	allowsNarrow bool
}

var actions = map[string]action{
	"approve":    {to: apps.StateApproved, from: apps.StatePending, allowsNarrow: true},
	"activate":   {to: apps.StateActive, from: apps.StateApproved},
	"suspend":    {to: apps.StateSuspended, from: apps.StateActive, needsReason: true},
	"reactivate": {to: apps.StateActive, from: apps.StateSuspended},
	"deactivate": {to: apps.StateDeactivated, needsReason: true},
}

type api struct {
	store   apps.Store
	offered map[string][]string
	log     *slog.Logger
}

// New returns the handler of the paths under /admin/apps/. offered is, per API name, the scopes that API
// offers (config apis[].smart.scopes): registrations are checked against it. token is the admin token
// file's content; surrounding white space is not part of it.
func New(store apps.Store, offered map[string][]string, token []byte, log *slog.Logger) (http.Handler, error) {
	token = bytes.TrimSpace(token)
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("apps admin: a store is required"))
	}
	if log == nil {
		errs = append(errs, errors.New("apps admin: a logger is required"))
	}
	tok, err := adminauth.New(token)
	if err != nil {
		errs = append(errs, fmt.Errorf("apps admin: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a := &api{store: store, offered: offered, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/apps/{$}", a.list)
	mux.HandleFunc("POST /admin/apps/{$}", a.register)
	mux.HandleFunc("GET /admin/apps/{id}", a.get)
	mux.HandleFunc("PUT /admin/apps/{id}", a.update)
	mux.HandleFunc("GET /admin/apps/{id}/history", a.history)
	mux.HandleFunc("POST /admin/apps/{id}/{action}", a.transition)
	mux.HandleFunc("/admin/apps/", func(w http.ResponseWriter, r *http.Request) {
		refuse(w, http.StatusNotFound, "no such admin resource: see GET /admin/apps/")
	})
	return tok.Require(mux, "apps admin", log, refuse, "unauthorized: send Authorization: Bearer <the content of admin.token_file>"), nil
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	all, err := a.store.List(r.Context())
	if err != nil {
		a.fail(w, "list the apps", err)
		return
	}
	out := make([]AppView, len(all))
	for i, app := range all {
		out[i] = a.withSync(r.Context(), app)
	}
	write(w, http.StatusOK, out)
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	app, err := a.store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, "read an app", err)
		return
	}
	write(w, http.StatusOK, a.withSync(r.Context(), app))
}

func (a *api) history(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := a.store.Get(r.Context(), id); err != nil { // an unknown app is 404, not an empty history
		a.fail(w, "read an app", err)
		return
	}
	evs, err := a.store.History(r.Context(), id)
	if err != nil {
		a.fail(w, "read an app's history", err)
		return
	}
	out := make([]apps.Event, len(evs))
	for i, ev := range evs {
		out[i] = viewEvent(ev)
	}
	write(w, http.StatusOK, out)
}

func (a *api) register(w http.ResponseWriter, r *http.Request) {
	var body Registration
	if !decode(w, r, &body, "a registration") {
		return
	}
	actor, reason, ok := reviewerOf(w, body.Reviewer, body.Reason, false)
	if !ok {
		return
	}
	app := body.App
	switch {
	case app.State != "" && app.State != apps.StatePending:
		refuse(w, http.StatusUnprocessableEntity, fmt.Sprintf("state %q: a new app starts pending; approve and activate it afterwards", app.State))
		return
	case len(app.ApprovedAPIs) > 0 || len(app.ApprovedScopes) > 0:
		refuse(w, http.StatusUnprocessableEntity, "approved_apis and approved_scopes are a reviewer's to set: POST /admin/apps/{id}/approve")
		return
	case app.Version != 0:
		refuse(w, http.StatusUnprocessableEntity, "version: a new app has none; PUT /admin/apps/{id} updates one")
		return
	}
	// Until a reviewer narrows them, what the app may be granted is what it asked for; only an active app's
	// are honoured.
	app.State = apps.StatePending
	app.ApprovedAPIs, app.ApprovedScopes = slices.Clone(app.RequestedAPIs), slices.Clone(app.RequestedScopes)
	if err := apps.ValidateRegistration(app, a.offered); err != nil {
		a.fail(w, "register an app", err)
		return
	}
	// The change is the store's to finish once it started: a client hanging up must not leave it half done.
	ctx := context.WithoutCancel(r.Context())
	created, err := a.store.Create(ctx, app, actor, reason)
	if err != nil {
		a.fail(w, "register an app", err)
		return
	}
	if created.Environment == apps.Sandbox {
		// Sandbox apps reach synthetic data only: approved and switched on at once, each step its own event.
		for _, to := range []apps.State{apps.StateApproved, apps.StateActive} {
			if created, err = a.store.Transition(ctx, created.ClientID, to, actor, SandboxReason, nil, nil); err != nil {
				a.fail(w, "switch the sandbox app on (it is registered; retry with /approve and /activate)", err)
				return
			}
		}
	}
	a.log.Info("apps admin: registered", "client_id", created.ClientID, "environment", string(created.Environment),
		"state", string(created.State), "actor", actor)
	write(w, http.StatusCreated, View(created))
}

func (a *api) update(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body Registration
	if !decode(w, r, &body, "an update") {
		return
	}
	actor, reason, ok := reviewerOf(w, body.Reviewer, body.Reason, false)
	if !ok {
		return
	}
	app := body.App
	switch {
	case app.ClientID != "" && app.ClientID != id:
		refuse(w, http.StatusUnprocessableEntity, fmt.Sprintf("client_id %q: the path names %q; a client id never changes", clip(app.ClientID), clip(id)))
		return
	case app.Version < 1:
		refuse(w, http.StatusUnprocessableEntity, "version is required: the version of the app you read (GET /admin/apps/{id})")
		return
	}
	cur, err := a.store.Get(r.Context(), id)
	if err != nil {
		a.fail(w, "read an app", err)
		return
	}
	if app.Environment != cur.Environment {
		refuse(w, http.StatusUnprocessableEntity, fmt.Sprintf("environment %q: this app is %s; production access needs a production registration and a reviewer's approval", app.Environment, cur.Environment))
		return
	}
	// The lifecycle's fields stay the store's: an update never approves more than a reviewer did, and what
	// the app no longer requests it is no longer granted.
	app.ClientID, app.State, app.CreatedAt, app.UpdatedAt = id, cur.State, cur.CreatedAt, cur.UpdatedAt
	app.ApprovedAPIs = intersect(cur.ApprovedAPIs, app.RequestedAPIs)
	app.ApprovedScopes = covered(cur.ApprovedScopes, app.RequestedScopes)
	if len(app.JWKS) > 0 && bytes.Equal(stripPrivate(app.JWKS), stripPrivate(cur.JWKS)) && !bytes.Equal(app.JWKS, cur.JWKS) {
		// What GET showed (private parts left out) sent back unchanged: keep the stored keys as they are.
		app.JWKS = cur.JWKS
	}
	if err := apps.ValidateRegistration(app, a.offered); err != nil {
		a.fail(w, "update an app", err)
		return
	}
	updated, err := a.store.Update(context.WithoutCancel(r.Context()), app, actor, reason)
	if err != nil {
		a.fail(w, "update an app", err)
		return
	}
	a.log.Info("apps admin: updated", "client_id", id, "version", updated.Version, "actor", actor)
	write(w, http.StatusOK, View(updated))
}

func (a *api) transition(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("id"), r.PathValue("action")
	act, known := actions[name]
	if !known {
		refuse(w, http.StatusNotFound, fmt.Sprintf("no such action %q: approve, activate, suspend, reactivate or deactivate", clip(name)))
		return
	}
	var body Approval
	if act.allowsNarrow {
		if !decode(w, r, &body, "an approval") {
			return
		}
	} else {
		var rv Review
		if !decode(w, r, &rv, "a review") {
			return
		}
		body = Approval{Reviewer: rv.Reviewer, Reason: rv.Reason}
	}
	actor, reason, ok := reviewerOf(w, body.Reviewer, body.Reason, act.needsReason)
	if !ok {
		return
	}
	cur, err := a.store.Get(r.Context(), id)
	if err != nil {
		a.fail(w, "read an app", err)
		return
	}
	if (act.from != "" && cur.State != act.from) || !apps.CanTransition(cur.State, act.to) {
		refuse(w, http.StatusConflict, fmt.Sprintf("%s: the app is %s; %s", name, cur.State, nextSteps(cur.State)))
		return
	}
	var narrowAPIs, narrowScopes []string
	if act.allowsNarrow {
		// Never widening: a reviewer grants at most what the app requested (and the policy offers).
		if extra := missing(body.APIs, cur.RequestedAPIs); len(extra) > 0 {
			refuse(w, http.StatusUnprocessableEntity, fmt.Sprintf("apis %v: not requested by the app; an approval may only narrow %v", extra, cur.RequestedAPIs))
			return
		}
		if extra := uncovered(body.Scopes, cur.RequestedScopes); len(extra) > 0 {
			refuse(w, http.StatusUnprocessableEntity, fmt.Sprintf("scopes %v: not requested by the app; an approval may only narrow what it requested", extra))
			return
		}
		if body.APIs != nil {
			narrowAPIs = body.APIs
		}
		if body.Scopes != nil {
			narrowScopes = body.Scopes
		}
	}
	next, err := a.store.Transition(context.WithoutCancel(r.Context()), id, act.to, actor, reason, narrowAPIs, narrowScopes)
	if err != nil {
		a.fail(w, name+" an app", err)
		return
	}
	a.log.Info("apps admin: "+name, "client_id", id, "from", string(cur.State), "to", string(next.State), "actor", actor)
	write(w, http.StatusOK, View(next))
}

// nextSteps says what the lifecycle allows from s (pending → approved → active ⇄ suspended → deactivated).
func nextSteps(s apps.State) string {
	switch s {
	case apps.StatePending:
		return "approve it (or deactivate it) first"
	case apps.StateApproved:
		return "activate it (or deactivate it)"
	case apps.StateActive:
		return "it may be suspended or deactivated"
	case apps.StateSuspended:
		return "it may be reactivated or deactivated"
	case apps.StateDeactivated:
		return "deactivation is final; register a new app"
	}
	return "unknown state"
}

// reviewerOf checks the reviewer's name and the reason, and answers 400/422 when they will not do; the actor
// is "admin:<name>".
func reviewerOf(w http.ResponseWriter, name, reason string, needsReason bool) (actor, why string, ok bool) {
	name, reason = strings.TrimSpace(name), strings.TrimSpace(reason)
	switch {
	case name == "":
		refuse(w, http.StatusBadRequest, "reviewer is required: the name recorded with the change (as admin:<name>)")
		return "", "", false
	case len(name) > 128 || strings.IndexFunc(name, unicode.IsControl) >= 0:
		refuse(w, http.StatusBadRequest, "reviewer must be a name of at most 128 characters")
		return "", "", false
	case len(reason) > 1024 || strings.IndexFunc(reason, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) >= 0:
		refuse(w, http.StatusBadRequest, "reason must be text of at most 1024 characters")
		return "", "", false
	case needsReason && reason == "":
		refuse(w, http.StatusUnprocessableEntity, "reason is required: the app's developer and the auditors are told why")
		return "", "", false
	}
	return "admin:" + name, reason, true
}

// decode reads one JSON value of the expected shape, refusing unknown fields and bodies over MaxBody.
func decode(w http.ResponseWriter, r *http.Request, into any, what string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		var tooBig *http.MaxBytesError
		msg := clip(oneLine(err.Error()))
		if errors.As(err, &tooBig) {
			msg = fmt.Sprintf("larger than %d bytes", MaxBody)
		}
		refuse(w, http.StatusBadRequest, "the body is not "+what+": "+msg)
		return false
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		refuse(w, http.StatusBadRequest, "the body is not "+what+": more than one JSON value")
		return false
	}
	return true
}

// fail answers a store's or the policy's error with its status: the store's kinds are the API's answers.
func (a *api) fail(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, apps.ErrNotFound):
		refuse(w, http.StatusNotFound, apps.ErrNotFound.Error())
	case errors.Is(err, apps.ErrExists):
		refuse(w, http.StatusConflict, apps.ErrExists.Error()+": choose another client_id, or PUT /admin/apps/{id} to change it")
	case errors.Is(err, apps.ErrConflict):
		refuse(w, http.StatusConflict, apps.ErrConflict.Error()+": read it again (GET /admin/apps/{id}) and send its version")
	case errors.Is(err, apps.ErrTransition):
		refuse(w, http.StatusConflict, oneLine(err.Error()))
	case errors.Is(err, apps.ErrInvalid):
		refuse(w, http.StatusUnprocessableEntity, policyProblems(err))
	case errors.Is(err, apps.ErrAuditFailed):
		a.log.Error("apps admin: could not "+what, "err", err)
		refuse(w, http.StatusServiceUnavailable, apps.ErrAuditFailed.Error()+"; retry when the audit spool is ready")
	default:
		a.log.Error("apps admin: could not "+what, "err", err)
		refuse(w, http.StatusInternalServerError, "internal error: could not "+what)
	}
}

// policyProblems lists every problem of a refused registration, one per "; ".
func policyProblems(err error) string {
	lines := strings.Split(err.Error(), "\n")
	out := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	msg := strings.Join(out, "; ")
	if len(msg) > 4096 {
		msg = msg[:4096] + "…"
	}
	return msg
}

func refuse(w http.ResponseWriter, status int, msg string) { write(w, status, Error{Error: msg}) }

func write(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error: could not encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// missing is what of want is not in have.
func missing(want, have []string) []string {
	var out []string
	for _, s := range want {
		if !slices.Contains(have, s) {
			out = append(out, s)
		}
	}
	return out
}

// uncovered is what of want no scope of have covers (decision.Covers: patient/*.rs covers patient/Observation.rs).
func uncovered(want, have []string) []string {
	var out []string
	for _, s := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return decision.Covers(h, s) }) {
			out = append(out, s)
		}
	}
	return out
}

// covered keeps the scopes of a that a scope of b covers, in a's order.
func covered(a, b []string) []string {
	out := []string{}
	for _, s := range a {
		if slices.ContainsFunc(b, func(h string) bool { return decision.Covers(h, s) }) {
			out = append(out, s)
		}
	}
	return out
}

// intersect keeps the elements of a that are in b, in a's order.
func intersect(a, b []string) []string {
	out := []string{}
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
