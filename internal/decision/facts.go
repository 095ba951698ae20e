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
}

// ErrNoAttribution means the provider has no attribution list: it may see no patient.
var ErrNoAttribution = errors.New("no attribution list for provider")

// ErrNoProvider means the caller acts for no provider fhirwall can attribute patients to (no organisation
// from the token or the registry, no Practitioner fhirUser): a refusal (403), not an outage.
var ErrNoProvider = errors.New("caller acts for no provider")

// Consent says which members opted out of Provider Access (CMS-0057-F: opt-out, never shared with providers).
type Consent interface {
	// OptedOut returns the bare Patient ids of the members who opted out; an error when it cannot answer.
	OptedOut(ctx context.Context) (map[string]bool, error)
}

// providerFacts gathers the policy facts of a Provider Access request:
//
//	{"provider": "Organization/org-a", "attribution_group": "attribution-org-a",
//	 "attributed_patients": [...sorted ids], "opted_out": [...sorted ids]}
//
// The attributed list is not reduced by the opt-outs: the policy does that, so a reader of the policy sees
// the rule. A provider without an attribution list gets empty facts (the policy then permits no patient).
// Any other error must refuse the request with 503: without facts nothing can be decided (fail closed).
func (c *Core) providerFacts(ctx context.Context, d *Decision) (map[string]any, error) {
	if c.Attribution == nil || c.Consent == nil { // misconfigured: fail closed rather than skip the check
		return nil, errors.New("facts: attribution or consent source not configured")
	}
	provider, err := providerOf(d)
	if err != nil {
		return nil, err
	}
	facts := map[string]any{"provider": provider, "attribution_group": "", "attributed_patients": []any{}}
	list, err := c.Attribution.Attributed(ctx, provider)
	switch {
	case errors.Is(err, ErrNoAttribution):
	case err != nil:
		return nil, fmt.Errorf("facts: attribution of %s: %w", provider, err)
	default:
		patients := slices.Clone(list.Patients)
		slices.Sort(patients)
		facts["attribution_group"] = list.GroupID
		facts["attributed_patients"] = toAny(slices.Compact(patients))
	}
	out, err := c.Consent.OptedOut(ctx)
	if err != nil {
		return nil, fmt.Errorf("facts: consent: %w", err)
	}
	opted := make([]string, 0, len(out))
	for p, yes := range out {
		if yes {
			opted = append(opted, p)
		}
	}
	slices.Sort(opted)
	facts["opted_out"] = toAny(opted)
	return facts, nil
}

// providerOf names the provider a request acts for, in the order the provider-access policy picks its scope
// context: the token's organisation (a backend service), then a Practitioner fhirUser (a user acting through
// an app, narrower than the app's organisation), then the organisation the registry binds the client to.
func providerOf(d *Decision) (string, error) {
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
	if d.Input.API != "provider-access" || d.Identity == nil || d.Request.Interaction == fhir.Capabilities || d.Request.Interaction == fhir.SmartConfiguration {
		return true
	}
	facts, err := c.providerFacts(ctx, d)
	switch {
	case errors.Is(err, ErrNoProvider):
		d.refuse(outcome.Forbidden, "no_provider_identity")
		return false
	case err != nil:
		c.Log.Error("provider facts unavailable", "decision_id", d.ID, "error", err)
		c.observer().UpstreamFailed(d, err)
		d.refuse(outcome.Unavailable, "facts_unavailable")
		return false
	}
	if prev, ok := input["facts"].(map[string]any); ok {
		for k, v := range prev {
			facts[k] = v
		}
	}
	input["facts"] = facts
	return c.exportFacts(ctx, d, facts)
}
