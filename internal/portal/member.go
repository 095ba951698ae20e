package portal

import (
	"errors"
	"net/http"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// grant is one app a member has signed in to.
type grant struct {
	ClientID string
	Name     string
	Org      string
}

type memberPage struct {
	Grants      []grant
	Unavailable bool
	Revoked     string // the app just revoked
}

// memberApps lists the apps the signed-in user has granted access to (their sessions and refresh or
// offline tokens at the identity provider).
func (h *handler) memberApps(w http.ResponseWriter, r *http.Request, s *session) {
	h.renderMember(w, r, s, "", http.StatusOK)
}

func (h *handler) renderMember(w http.ResponseWriter, r *http.Request, s *session, revoked string, status int) {
	p := memberPage{Revoked: revoked}
	if h.idp == nil {
		p.Unavailable = true
		h.render(w, r, status, "member", "My connected apps", p)
		return
	}
	ids, err := h.idp.Grants(r.Context(), s.Subject)
	if err != nil {
		h.log.Warn("portal: grants", "err", err)
		p.Unavailable = true
		h.render(w, r, http.StatusServiceUnavailable, "member", "My connected apps", p)
		return
	}
	for _, id := range ids {
		if id == h.auth.cfg.ClientID {
			continue // the portal itself: signing out ends it
		}
		g := grant{ClientID: id, Name: id}
		if a, err := h.store.Get(r.Context(), id); err == nil {
			g.Name, g.Org = a.Name, a.DeveloperOrg
		}
		p.Grants = append(p.Grants, g)
	}
	h.render(w, r, status, "member", "My connected apps", p)
}

// memberRevoke ends the member's grant to one app: first at the gateway (its tokens stop working on every
// replica), then at the identity provider (sessions, refresh and offline tokens).
func (h *handler) memberRevoke(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if h.idp == nil || h.revoker == nil {
		h.fail(w, r, http.StatusServiceUnavailable, "Revoking an app is unavailable here.")
		return
	}
	ids, err := h.idp.Grants(r.Context(), s.Subject)
	if err != nil {
		h.fail(w, r, http.StatusServiceUnavailable, "The identity provider did not answer; nothing was revoked. Try again.")
		return
	}
	granted := false
	for _, g := range ids {
		granted = granted || (g == id && id != h.auth.cfg.ClientID)
	}
	if !granted {
		h.fail(w, r, http.StatusNotFound, "You have not connected such an app.")
		return
	}
	actor := "member:" + s.Subject
	if err := h.revoker.RevokeGrant(r.Context(), s.Subject, id, actor); err != nil {
		h.log.Error("portal: revoke at the gateway", "client_id", id, "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, "The app could not be revoked; nothing changed. Try again.")
		return
	}
	if err := h.idp.RevokeGrant(r.Context(), s.Subject, id); err != nil && !errors.Is(err, apps.ErrNotFound) {
		// The gateway already refuses the app's tokens for this member; the sessions end on the next try.
		h.log.Error("portal: revoke at the identity provider", "client_id", id, "err", err)
		h.fail(w, r, http.StatusBadGateway, "The app's access is revoked at the gateway, but its sessions at the identity provider could not be ended. Try again.")
		return
	}
	h.log.Info("portal: member revoked an app", "client_id", id, "actor", actor)
	h.renderMember(w, r, s, id, http.StatusOK)
}
