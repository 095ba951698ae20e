package decision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/smart"
)

// Registry is the client (app) registry: whether a client is registered, active and enabled for an API, and
// which scopes it may hold. It is consulted on every authenticated decision, so a deactivated client is
// refused at once even while its tokens have not expired.
type Registry interface {
	// Lookup returns the client with this id, ErrUnknownClient, or another error when the registry cannot
	// answer (the request then fails closed with 503).
	Lookup(ctx context.Context, clientID string) (Client, error)
}

// ErrUnknownClient means no client with that id is registered.
var ErrUnknownClient = errors.New("unknown client")

// Client is the registry's view of one client.
type Client struct {
	ID     string
	Name   string
	Active bool
	APIs   []string // the APIs the client may call, e.g. patient-access
	// Scopes are the patterns of the scopes the client may hold, e.g. "patient/*.rs"; see Covers.
	Scopes []string
	Tier   string // rate tier
	Org    string // the organisation a backend client acts for, e.g. Organization/org-a
	// NotifyHosts are the hosts (name or IP, optionally host:port) the client registered for notifications
	// (Prior Authorization Subscriptions): fhirwall sends notifications to no other host.
	NotifyHosts []string
}

// AlwaysAllowedScopes are the non-resource scopes any registered client may hold: they grant no data by
// themselves (SMART App Launch 2.x §scopes for requesting context data and identity data).
var AlwaysAllowedScopes = []string{"openid", "fhirUser", "launch/patient", "offline_access"}

// Validate reports every problem with the client's own fields.
func (cl Client) Validate() error {
	var errs []error
	if cl.ID == "" || strings.ContainsAny(cl.ID, " \t\n") {
		errs = append(errs, fmt.Errorf("id %q: want a client id without spaces", cl.ID))
	}
	for _, p := range cl.Scopes {
		if p == "" || strings.ContainsAny(p, " \t\n") {
			errs = append(errs, fmt.Errorf("scope %q: want one scope without spaces", p))
			continue
		}
		if _, err := smart.Parse(p); err != nil && !errors.Is(err, smart.ErrNotResourceScope) {
			errs = append(errs, fmt.Errorf("scope %q: %w", p, err))
		}
	}
	if cl.Org != "" && !strings.HasPrefix(cl.Org, "Organization/") {
		errs = append(errs, fmt.Errorf("org %q: want Organization/<id>", cl.Org))
	}
	return errors.Join(errs...)
}

// FilterScopes splits a token's scopes into those the client may hold and those it may not. Only ever
// narrows: a scope is kept when one of the client's patterns covers it whole.
func (cl Client) FilterScopes(scopes []string) (kept, dropped []string) {
	kept = make([]string, 0, len(scopes))
	for _, s := range scopes {
		if slices.Contains(AlwaysAllowedScopes, s) || slices.ContainsFunc(cl.Scopes, func(p string) bool { return Covers(p, s) }) {
			kept = append(kept, s)
		} else {
			dropped = append(dropped, s)
		}
	}
	return kept, dropped
}

// Covers reports whether the scope pattern allows holding scope. Non-resource scopes must match exactly.
// A resource pattern covers a resource scope of the same context whose type it names (or "*"), whose
// permissions are a subset of its own (SMART 2.x: v1 read == rs, write == cud), and which carries at least
// the pattern's granular parameters with the same values: a granular pattern never covers a wider scope.
func Covers(pattern, scope string) bool {
	if pattern == scope {
		return true
	}
	p, err := smart.Parse(pattern)
	if err != nil {
		return false
	}
	s, err := smart.Parse(scope)
	if err != nil {
		return false
	}
	if p.Context != s.Context || (p.ResourceType != "*" && p.ResourceType != s.ResourceType) {
		return false
	}
	pp, sp := p.Permissions, s.Permissions
	if (sp.Create && !pp.Create) || (sp.Read && !pp.Read) || (sp.Update && !pp.Update) ||
		(sp.Delete && !pp.Delete) || (sp.Search && !pp.Search) {
		return false
	}
	for k, want := range p.Params {
		got := s.Params[k]
		if len(got) != len(want) {
			return false
		}
		a, b := slices.Clone(got), slices.Clone(want)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			return false
		}
	}
	return true
}

// checkClient holds an authenticated request to the registry. It refuses d and returns false when the
// client may not call this API; otherwise it narrows d.Identity's scopes to those the client may hold.
func (c *Core) checkClient(ctx context.Context, d *Decision) bool {
	if c.Registry == nil { // misconfigured: fail closed rather than skip the check
		c.Log.Error("no client registry configured", "decision_id", d.ID)
		d.refuse(outcome.Unavailable, "registry_unavailable")
		return false
	}
	cl, err := c.Registry.Lookup(ctx, d.Identity.ClientID)
	switch {
	case errors.Is(err, ErrUnknownClient):
		d.refuse(outcome.Forbidden, "client_not_registered")
		return false
	case err != nil:
		c.Log.Error("client registry failed", "decision_id", d.ID, "error", err)
		d.refuse(outcome.Unavailable, "registry_unavailable")
		return false
	case !cl.Active:
		d.refuse(outcome.Forbidden, "client_inactive")
		return false
	case !slices.Contains(cl.APIs, d.Input.API):
		d.refuse(outcome.Forbidden, "client_not_enabled_for_api")
		return false
	case cl.Org != "" && d.Identity.Org != "" && cl.Org != d.Identity.Org:
		// The IdP and the registry disagree on whom the client acts for: trust neither.
		d.refuse(outcome.Forbidden, "client_org_mismatch")
		return false
	}
	kept, dropped := cl.FilterScopes(d.Identity.Scopes)
	id := *d.Identity // a copy: the verifier may share the original with its cache
	id.Scopes = kept
	d.Identity, d.Client, d.DroppedScopes = &id, &cl, dropped
	return true
}

// withRegistry adds what the token and the registry say about the client to a policy input built by
// policyInput: identity.org, identity.dropped_scopes and client {id, name, tier, org, apis}.
func withRegistry(in map[string]any, d *Decision) map[string]any {
	idm, ok := in["identity"].(map[string]any)
	if !ok || d.Identity == nil {
		return in
	}
	if d.Identity.Org != "" {
		idm["org"] = d.Identity.Org
	}
	if cl := d.Client; cl != nil {
		idm["dropped_scopes"] = toAny(d.DroppedScopes)
		in["client"] = map[string]any{"id": cl.ID, "name": cl.Name, "tier": cl.Tier, "org": cl.Org, "apis": toAny(cl.APIs)}
	}
	return in
}
