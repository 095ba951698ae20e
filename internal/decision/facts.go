package decision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Attribution says which patients are attributed to a provider (CMS-0057-F Provider Access: a provider sees
// only its attributed members). The FHIR-server implementation reads Da Vinci ATR / PDex attribution Groups.
type Attribution interface {
	// Attributed returns the provider's attribution list. provider is Organization/<id> (a backend client
	// registered to an organisation) or Practitioner/<id> (a user's fhirUser). It returns ErrNoAttribution
	// when the provider has no attribution list, and another error when the source cannot answer.
	Attributed(ctx context.Context, provider string) (AttributionList, error)
}

// AttributionList is one provider's attributed patients: bare Patient ids, active memberships only.
type AttributionList struct {
	GroupID  string // the attribution Group's id, the one a provider may bulk-export
	Patients []string
	members  map[string]struct{} // NewAttributionList's index; nil in a literal (Has then scans)
}

// NewAttributionList indexes patients once, so that a membership question costs a map lookup whatever the
// size of the group (100,000+ members), not a scan or a copy per request.
func NewAttributionList(group string, patients []string) AttributionList {
	l := AttributionList{GroupID: group, Patients: patients, members: make(map[string]struct{}, len(patients))}
	for _, p := range patients {
		l.members[p] = struct{}{}
	}
	return l
}

// Has reports whether the patient id is on the list.
func (l AttributionList) Has(id string) bool {
	if l.members != nil {
		_, ok := l.members[id]
		return ok
	}
	return slices.Contains(l.Patients, id)
}

// membership answers, for one Provider Access decision, whether a patient is attributed to its provider and
// has not opted out (CMS-0057-F). It is the snapshot the decision was taken on, and response enforcement
// holds every resource that leaves to the same snapshot.
type membership struct {
	list     AttributionList
	optedOut map[string]bool
	// Payer-to-Payer (payer.go): the payer; its members whose opt-in is #regular, whose sensitive resources
	// stay; pending while the opt-ins are still to be read from the answer (resolveOptIns).
	payer       string
	regularOnly map[string]bool
	pending     bool
}

func (m *membership) permits(id string) bool {
	return m != nil && m.list.Has(id) && !m.optedOut[id]
}

// anyPermitted reports whether the provider may see anybody at all.
func (m *membership) anyPermitted() bool {
	for _, p := range m.list.Patients {
		if !m.optedOut[p] {
			return true
		}
	}
	return false
}

// namedPatients are the patient ids a request names where a patient is named: a Patient read's id, and the
// values of the plain parameters that link its type to a patient (the compartment parameters, "patient",
// and _id on Patient). Values are keyed as the policy reads them (without a "Patient/" prefix).
func namedPatients(r fhir.Request) []string {
	var out []string
	if r.ResourceType == "Patient" && r.ID != "" {
		out = append(out, r.ID)
	}
	linking := fhir.PatientCompartment[r.ResourceType]
	for _, p := range r.Params {
		if p.Key != p.Name {
			continue // modifiers and chains on these are refused by the policy
		}
		if !(slices.Contains(linking, p.Name) || p.Name == "patient" && len(linking) > 0 || p.Name == "_id" && r.ResourceType == "Patient") {
			continue
		}
		for _, v := range p.Values {
			out = append(out, strings.TrimPrefix(v, "Patient/"))
		}
	}
	return out
}

// ErrNoAttribution means the provider has no attribution list: it may see no patient.
var ErrNoAttribution = errors.New("no attribution list for provider")

// ErrNoProvider means the caller acts for no provider fhirwall can attribute patients to (no organisation
// from the token or the registry, no Practitioner fhirUser): a refusal (403), not an outage.
var ErrNoProvider = errors.New("caller acts for no provider")

// Consent says which members opted out of Provider Access (CMS-0057-F: opt-out, never shared with providers).
type Consent interface {
	// OptedOut returns the bare Patient ids of the members who opted out; an error when it cannot answer. The
	// map is read-only (shared between requests).
	OptedOut(ctx context.Context) (map[string]bool, error)
}

// providerFacts gathers the policy facts of a Provider Access request:
//
//	{"provider": "Organization/org-a", "attribution_group": "attribution-org-a", "has_permitted": true,
//	 "patients": {"member-01": true, "member-99": false}}
//
// patients answers, for each patient the request names, whether it is attributed to the provider and has not
// opted out; the attribution list itself never reaches the policy (a provider organisation has tens of
// thousands of members), and the decision keeps the membership for response enforcement. A provider
// without an attribution list permits nobody. Any other error must refuse the request with 503: without
// facts nothing can be decided (fail closed).
func (c *Core) providerFacts(ctx context.Context, d *Decision) (map[string]any, *membership, error) {
	if c.Attribution == nil || c.Consent == nil { // misconfigured: fail closed rather than skip the check
		return nil, nil, errors.New("facts: attribution or consent source not configured")
	}
	provider, err := ProviderOf(d)
	if err != nil {
		return nil, nil, err
	}
	m, err := c.providerMembership(ctx, provider)
	if err != nil {
		return nil, nil, err
	}
	named := map[string]any{}
	for _, p := range namedPatients(d.Request) {
		named[p] = m.permits(p)
	}
	facts := map[string]any{"provider": provider, "attribution_group": m.list.GroupID,
		"has_permitted": m.anyPermitted(), "patients": named}
	return facts, m, nil
}

// ProviderOf names the provider a request acts for, in the order the provider-access policy picks its scope
// context: the token's organisation (a backend service), then a Practitioner fhirUser (a user acting through
// an app, narrower than the app's organisation), then the organisation the registry binds the client to.
func ProviderOf(d *Decision) (string, error) {
	id := d.Identity
	if id == nil {
		return "", ErrNoProvider
	}
	switch {
	case id.Org != "":
		if !strings.HasPrefix(id.Org, "Organization/") {
			return "", fmt.Errorf("%w: token org %q is not Organization/<id>", ErrNoProvider, id.Org)
		}
		return id.Org, nil
	case strings.HasPrefix(id.FHIRUser, "Practitioner/") && len(id.FHIRUser) > len("Practitioner/"):
		return id.FHIRUser, nil
	case d.Client != nil && d.Client.Org != "":
		return d.Client.Org, nil // Validate made sure it is Organization/<id>
	}
	return "", ErrNoProvider
}

// priorAuthFacts are the policy facts of a Prior Authorization request: the provider it acts for,
//
//	{"provider": "Organization/org-a"} or {"provider": "Practitioner/pract-01"}
//
// (ProviderOf: the token's organisation, a clinician's Practitioner fhirUser, the registry's organisation).
// A caller that acts for no provider gets no provider fact: the policy refuses it (403) and says why, a
// member's token (patient_token_not_allowed) or no provider at all (no_provider_identity). Nothing here
// waits on an outside source, so there is nothing to fail closed on.
func priorAuthFacts(d *Decision) map[string]any {
	provider, err := ProviderOf(d)
	if err != nil { // only ErrNoProvider: the policy refuses
		return map[string]any{}
	}
	return map[string]any{"provider": provider}
}

// addFacts puts what the policy of d's API needs to know from outside into input["facts"]: for Provider
// Access, the provider's attributed patients and the opt-outs. A caller that acts for no provider is
// refused (403); a source that cannot answer refuses the request (503) rather than decide without it.
func (c *Core) addFacts(ctx context.Context, d *Decision, input map[string]any) bool {
	if d.Request.Interaction == fhir.Paging && d.Identity != nil {
		// A paging link is a capability: only the client (and patient) whose search created it may follow it.
		owner, ok, err := c.PageOwner(ctx, d.Request.Query.Get("_getpages"))
		if err != nil {
			c.Log.Error("page store unavailable", "decision_id", d.ID, "error", err)
			d.refuse(outcome.Unavailable, "page_store_unavailable")
			return false
		}
		facts, _ := input["facts"].(map[string]any)
		if facts == nil {
			facts = map[string]any{}
		}
		facts["page_bound_to_caller"] = ok && owner == pageOwner(d.Identity)
		input["facts"] = facts
	}
	if d.Identity == nil || d.Request.Interaction == fhir.Capabilities || d.Request.Interaction == fhir.SmartConfiguration {
		return true
	}
	api := baseAPI(d.Input.API) // a sandbox is decided with its base API's facts
	if api == PayerToPayer {
		return c.addPayerFacts(ctx, d, input)
	}
	if api == "prior-auth" {
		return c.useFacts(ctx, d, input, priorAuthFacts(d), nil, nil, "no_provider_identity")
	}
	if api != "provider-access" {
		return true
	}
	facts, members, err := c.providerFacts(ctx, d)
	return c.useFacts(ctx, d, input, facts, members, err, "no_provider_identity")
}

// useFacts puts an API's facts into the policy input beside those gathered before (paging), keeps the
// membership for response enforcement and adds the bulk-export facts. A caller who acts for nobody the API
// knows is refused (403, noIdentity); facts that could not be gathered refuse the request (503).
func (c *Core) useFacts(ctx context.Context, d *Decision, input, facts map[string]any, members *membership, err error, noIdentity string) bool {
	switch {
	case errors.Is(err, ErrNoProvider):
		d.refuse(outcome.Forbidden, noIdentity)
		return false
	case err != nil:
		c.Log.Error("facts unavailable", "decision_id", d.ID, "api", d.Input.API, "error", err)
		c.observer().UpstreamFailed(d, err)
		d.refuse(outcome.Unavailable, "facts_unavailable")
		return false
	}
	d.members = members
	if prev, ok := input["facts"].(map[string]any); ok {
		for k, v := range prev {
			facts[k] = v
		}
	}
	input["facts"] = facts
	return c.exportFacts(ctx, d, facts)
}
