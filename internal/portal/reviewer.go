package portal

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// stateOrder puts what waits for a reviewer first.
var stateOrder = map[apps.State]int{apps.StatePending: 0, apps.StateApproved: 1, apps.StateSuspended: 2, apps.StateActive: 3, apps.StateDeactivated: 4}

func (h *handler) reviewList(w http.ResponseWriter, r *http.Request, s *session) {
	all, err := h.store.List(r.Context())
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	slices.SortStableFunc(all, func(a, b apps.App) int {
		return cmp.Or(cmp.Compare(stateOrder[a.State], stateOrder[b.State]), cmp.Compare(a.ClientID, b.ClientID))
	})
	h.render(w, r, http.StatusOK, "review", "Review apps", all)
}

// trailRow is one event of an app's audit trail, with what it changed.
type trailRow struct {
	Event   apps.Event
	Changes []string
}

type reviewDetail struct {
	Info    appDetail
	Trail   []trailRow
	Actions []string // what the app's state allows
}

func (h *handler) reviewApp(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := h.store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	d := reviewDetail{Info: h.detail(r.Context(), a)}
	for _, ev := range d.Info.History {
		d.Trail = append(d.Trail, trailRow{Event: ev, Changes: changes(ev.Before, ev.After)})
	}
	for _, act := range []string{"approve", "activate", "suspend", "reactivate", "deactivate"} {
		if grants[act] && a.Owner == owner(s) {
			continue
		}
		if to, ok := actionState[act]; ok && apps.CanTransition(a.State, to) && apps.TransitionAction(a.State, to) == act {
			d.Actions = append(d.Actions, act)
		}
	}
	h.render(w, r, http.StatusOK, "reviewapp", "Review "+a.Name, d)
}

var actionState = map[string]apps.State{
	"approve": apps.StateApproved, "activate": apps.StateActive, "suspend": apps.StateSuspended,
	"reactivate": apps.StateActive, "deactivate": apps.StateDeactivated,
}

// grants are the actions that give an app access. Review is a second person's judgement: a user holding
// both roles never grants access to an app they own (taking it away stays theirs to do).
var grants = map[string]bool{"approve": true, "activate": true, "reactivate": true}

// needsReason: a refusal of service is always explained.
var needsReason = map[string]bool{"suspend": true, "deactivate": true}

func (h *handler) reviewAction(w http.ResponseWriter, r *http.Request, s *session) {
	id, act := r.PathValue("id"), r.PathValue("action")
	to, ok := actionState[act]
	if !ok {
		h.fail(w, r, http.StatusNotFound, "There is no such action.")
		return
	}
	a, err := h.store.Get(r.Context(), id)
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	if grants[act] && a.Owner == owner(s) {
		h.fail(w, r, http.StatusForbidden, "You registered this app: another reviewer decides whether it gets access.")
		return
	}
	if apps.TransitionAction(a.State, to) != act {
		h.fail(w, r, http.StatusConflict, fmt.Sprintf("An app that is %s cannot be %s.", a.State, pastTense(act)))
		return
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) > 1000 || strings.ContainsAny(reason, "\r\n") {
		h.fail(w, r, http.StatusBadRequest, "The reason must be one line of at most 1000 characters.")
		return
	}
	if needsReason[act] && reason == "" {
		h.fail(w, r, http.StatusBadRequest, "Say why: a reason is required to "+act+" an app.")
		return
	}
	var narrowAPIs, narrowScopes []string
	if act == "approve" {
		narrowAPIs, narrowScopes = ticked(r.PostForm["api"], a.RequestedAPIs), ticked(r.PostForm["scope"], a.RequestedScopes)
		if len(narrowAPIs) == 0 || len(narrowScopes) == 0 {
			h.fail(w, r, http.StatusBadRequest, "Approve at least one API and one scope, or leave the app pending.")
			return
		}
	}
	out, err := h.store.Transition(r.Context(), id, to, actorReviewer(s), reason, narrowAPIs, narrowScopes)
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	h.log.Info("portal: review", "client_id", id, "action", act, "actor", actorReviewer(s))
	http.Redirect(w, r, "/review/apps/"+out.ClientID, http.StatusSeeOther)
}

// ticked keeps the ticked values that were offered, in the offered order: a form cannot widen.
func ticked(got, offered []string) []string {
	out := []string{}
	for _, o := range offered {
		if slices.Contains(got, o) {
			out = append(out, o)
		}
	}
	return out
}

func pastTense(act string) string {
	if strings.HasSuffix(act, "e") {
		return act + "d"
	}
	return act + "ed"
}

// changes lists the fields an event changed, "field: before → after" (secrets are never in an App).
func changes(before, after *apps.App) []string {
	if after == nil {
		return nil
	}
	am := asMap(after)
	if before == nil {
		return []string{"registered (state " + string(after.State) + ", " + string(after.Environment) + ")"}
	}
	bm := asMap(before)
	var out []string
	keys := make([]string, 0, len(am))
	for k := range am {
		keys = append(keys, k)
	}
	for k := range bm {
		if _, ok := am[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "updated_at" || k == "version" {
			continue
		}
		if string(bm[k]) != string(am[k]) {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, orNone(bm[k]), orNone(am[k])))
		}
	}
	return out
}

func asMap(a *apps.App) map[string]json.RawMessage {
	b, _ := json.Marshal(a)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	return m
}

func orNone(b json.RawMessage) string {
	if len(b) == 0 || string(b) == "null" {
		return "none"
	}
	return string(b)
}
