package priorauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/adapters/priorauth/subscriptions"
	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// caller is who asks: the provider the client acts for, as the FHIR server knows it.
type caller struct {
	ClientID string
	// Provider is Organization/<id> (a backend service, or an app the registry binds to an organisation) or
	// Practitioner/<id> (a clinician's user token, fhirUser).
	Provider    string
	Identifiers []string // the provider's identifiers, system|value (its NPI among them)
	// Orgs are, for a practitioner, the organisations an active PractitionerRole on the FHIR server links
	// them to: a clinician acts for them too.
	Orgs []provider
}

// provider is one organisation or practitioner on the FHIR server, with its identifiers.
type provider struct {
	Ref         string
	Identifiers []string
}

// callerOf names the caller's provider by the rule the policy's facts use (decision.ProviderOf: the token's
// organisation, a Practitioner fhirUser, the registry's organisation) and reads its identifiers from the FHIR
// server. No provider: decision.ErrNoProvider (403); the FHIR server unreachable: an error (503), never a guess.
// In a sandbox the provider and its organisations must be synthetic (sandbox.go): a real one acts for nobody.
func (a *Adapter) callerOf(ctx context.Context, d *decision.Decision) (caller, error) {
	provider, err := decision.ProviderOf(d)
	if err != nil {
		return caller{}, err
	}
	c := caller{ClientID: d.Identity.ClientID, Provider: provider}
	sandbox := d.Sandbox()
	ids, found, err := a.identifiersOf(ctx, c.Provider, sandbox)
	if err != nil {
		return caller{}, err
	}
	if !found {
		return caller{}, fmt.Errorf("%w: %s is not on the FHIR server", decision.ErrNoProvider, c.Provider)
	}
	c.Identifiers = ids
	if strings.HasPrefix(c.Provider, "Practitioner/") {
		if c.Orgs, err = a.organisationsOf(ctx, c.Provider, sandbox); err != nil {
			return caller{}, err
		}
	}
	return c, nil
}

// identifiersOf reads Type/id from the FHIR server; found is false when the server does not have it, or, in a
// sandbox, has it without the sandbox tag.
func (a *Adapter) identifiersOf(ctx context.Context, ref string, sandbox bool) (ids []string, found bool, err error) {
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || !validID(id) || (typ != "Organization" && typ != "Practitioner") {
		return nil, false, nil
	}
	rep, err := a.fhir.Do(ctx, http.MethodGet, ref, nil, nil, nil)
	if err != nil {
		return nil, false, fmt.Errorf("priorauth: read %s: %w", ref, err)
	}
	switch rep.Status {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusGone:
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("priorauth: read %s: status %d", ref, rep.Status)
	}
	var res map[string]any
	if err := json.Unmarshal(rep.Body, &res); err != nil || asStr(res["resourceType"]) != typ {
		return nil, false, fmt.Errorf("priorauth: read %s: not a %s", ref, typ)
	}
	if active, ok := res["active"].(bool); ok && !active {
		return nil, false, nil // an inactive organisation or practitioner acts for nobody
	}
	if !synthetic.Usable(res, sandbox) {
		return nil, false, nil // a real provider acts for nobody in the sandbox
	}
	return Identifiers(res), true, nil
}

// organisationsOf finds the organisations active PractitionerRoles link the practitioner to.
func (a *Adapter) organisationsOf(ctx context.Context, practitioner string, sandbox bool) ([]provider, error) {
	var refs []string
	q := url.Values{"practitioner": {practitioner}, "active": {"true"}}
	err := a.search.Search(ctx, "PractitionerRole", synthetic.Narrow(q, sandbox), func(raw json.RawMessage) error {
		var role map[string]any
		if err := json.Unmarshal(raw, &role); err != nil {
			return err
		}
		// The search parameters narrowed it; the resource itself is judged again (a server that ignored a
		// parameter must not make a stranger a colleague).
		if active, _ := role["active"].(bool); !active || asStr(asObj(role["practitioner"])["reference"]) != practitioner || !synthetic.Usable(role, sandbox) {
			return nil
		}
		if org := asStr(asObj(role["organization"])["reference"]); strings.HasPrefix(org, "Organization/") && !slices.Contains(refs, org) {
			refs = append(refs, org)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("priorauth: roles of %s: %w", practitioner, err)
	}
	var out []provider
	for _, org := range refs {
		ids, found, err := a.identifiersOf(ctx, org, sandbox)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, provider{Ref: org, Identifiers: ids})
		}
	}
	return out, nil
}

// named reports which of the caller's providers the identifiers (of the resource a Claim names) belong to:
// the caller itself, else one of its organisations. ok false: the Claim names someone else.
func (c caller) named(ids []string) (provider, bool) {
	if shares(c.Identifiers, ids) {
		return provider{Ref: c.Provider, Identifiers: c.Identifiers}, true
	}
	for _, o := range c.Orgs {
		if shares(o.Identifiers, ids) {
			return o, true
		}
	}
	return provider{}, false
}

// orgIdentifiers are the identifiers a subscription filter (orgIdentifier) may name for this caller: its
// own, and for a clinician those of the organisations it acts for.
func (c caller) orgIdentifiers() []string {
	out := slices.Clone(c.Identifiers)
	for _, o := range c.Orgs {
		for _, id := range o.Identifiers {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// owner is the caller as the subscriptions package knows it.
func (c caller) owner(d *decision.Decision) subscriptions.Owner {
	o := subscriptions.Owner{ClientID: c.ClientID, Provider: c.Provider, OrgIdentifiers: c.orgIdentifiers()}
	if d.Client != nil {
		o.NotifyHosts = slices.Clone(d.Client.NotifyHosts)
	}
	return o
}

func shares(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// validID: a FHIR id (R4 §2.24.0.1: [A-Za-z0-9\-\.]{1,64}).
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
