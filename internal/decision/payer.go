package decision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Payer-to-Payer (CMS-0057-F): another payer reads a member's data only while the member's opt-in names it.
// The opt-in is a PDex Consent stored on the FHIR server when the payer matched the member
// (adapters/payerexchange); it is read again for every request, never cached, so a Consent made inactive or
// deleted on the FHIR server stops the very next request.

// PayerToPayer is the API whose policy reads opt-in facts.
const PayerToPayer = "payer-to-payer"

// Kinds of JobStore bindings the Payer-to-Payer adapter makes; the decision reads them as facts.
const (
	MatchJob   ExportKind = "match-job"   // a $bulk-member-match job id → the client that started it
	MatchGroup ExportKind = "match-group" // a Group a $bulk-member-match created → the client that started it
)

// OptIns says which members opted in to sharing their data with a payer.
type OptIns interface {
	// OptedIn returns, of patients (bare Patient ids; nil means every member), those whose opt-in naming payer
	// (Organization/<id>) as recipient is in force at now, with what it covers. An error when it cannot answer.
	OptedIn(ctx context.Context, payer string, patients []string, now time.Time) (map[string]OptIn, error)
}

// OptIn is one member's opt-in to one payer.
type OptIn struct {
	// Sensitive: the Consent's policy is PDex/HRex #sensitive (all data); otherwise #regular, under which
	// resources labelled sensitive (datascope.Sensitive) do not leave.
	Sensitive bool
}

// payerOf names the payer organisation a request acts for: the token's organisation, else the one the
// registry binds the client to. Never a user: Payer-to-Payer is between organisations.
func payerOf(d *Decision) (string, error) {
	id := d.Identity
	switch {
	case id == nil:
		return "", ErrNoProvider
	case id.Org != "":
		if !strings.HasPrefix(id.Org, "Organization/") || len(id.Org) == len("Organization/") {
			return "", fmt.Errorf("%w: token org %q is not Organization/<id>", ErrNoProvider, id.Org)
		}
		return id.Org, nil
	case d.Client != nil && d.Client.Org != "":
		return d.Client.Org, nil
	}
	return "", ErrNoProvider
}

// payerFacts gathers the policy facts of a Payer-to-Payer request:
//
//	{"payer": "Organization/payer-b", "patients": {"p2p-exact": true}, "prefer_respond_async": true,
//	 "match_job_bound_to_caller": false, "group_bound_to_caller": true}
//
// patients says, for each patient the request names, whether its opt-in to this payer is in force now. A
// request that names nobody but returns members' data (a Patient search by identifier, a page, an export's
// status or file) is held to every member opted in to this payer, so the membership read is all of them.
func (c *Core) payerFacts(ctx context.Context, d *Decision) (map[string]any, *membership, error) {
	payer, err := payerOf(d)
	if err != nil {
		return nil, nil, err
	}
	facts := map[string]any{"payer": payer}
	r := d.Request
	if r.Interaction == fhir.Operation && r.Operation != nil {
		facts["prefer_respond_async"] = slices.Contains(r.Prefer, "respond-async")
		switch r.Operation.Name {
		case "member-match", "bulk-member-match":
			return facts, nil, nil // answered by the adapter, which judges the Consent sent with the request
		case "bulk-member-match-status":
			bound, err := c.boundToCaller(ctx, d, ExportRef{MatchJob, r.Query.Get("_jobId")})
			facts["match_job_bound_to_caller"] = bound
			return facts, nil, err
		case "davinci-data-export":
			bound, err := c.boundToCaller(ctx, d, ExportRef{MatchGroup, r.ID})
			facts["group_bound_to_caller"] = bound
			return facts, nil, err
		}
	}
	if c.OptIns == nil { // misconfigured: fail closed rather than skip the check
		return nil, nil, errors.New("facts: no opt-in source configured")
	}
	named := namedPatients(r)
	var ask []string
	if len(named) > 0 {
		ask = named // nil: every opted-in member
	}
	in, err := c.OptIns.OptedIn(ctx, payer, ask, d.Time)
	if err != nil {
		return nil, nil, fmt.Errorf("facts: opt-ins for %s: %w", payer, err)
	}
	ids := make([]string, 0, len(in))
	m := &membership{regularOnly: map[string]bool{}}
	for id, o := range in {
		ids = append(ids, id)
		if !o.Sensitive {
			m.regularOnly[id] = true
		}
	}
	m.list = NewAttributionList("", ids)
	patients := map[string]any{}
	for _, p := range named {
		patients[p] = m.permits(p)
	}
	facts["patients"] = patients
	return facts, m, nil
}

// boundToCaller reports whether ref is bound to the client making the request; a store that cannot answer
// is an error (the request is refused with 503, never decided without it).
func (c *Core) boundToCaller(ctx context.Context, d *Decision, ref ExportRef) (bool, error) {
	if c.Jobs == nil || ref.ID == "" || d.Identity == nil {
		return false, nil
	}
	owner, ok, err := c.Jobs.Owner(ctx, ref)
	if err != nil {
		return false, fmt.Errorf("facts: job store: %w", err)
	}
	return ok && owner == ExportOwner(d), nil
}

// addPayerFacts is addFacts for Payer-to-Payer.
func (c *Core) addPayerFacts(ctx context.Context, d *Decision, input map[string]any) bool {
	facts, members, err := c.payerFacts(ctx, d)
	switch {
	case errors.Is(err, ErrNoProvider):
		d.refuse(outcome.Forbidden, "no_payer_identity")
		return false
	case err != nil:
		c.Log.Error("payer facts unavailable", "decision_id", d.ID, "error", err)
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

// regularOnlyFor reports whether one of patients opted in under #regular only: then a resource labelled
// sensitive does not leave (HRex hrex-consent-policy: #regular excludes sensitive data, #sensitive includes it).
func (m *membership) regularOnlyFor(patients []string) bool {
	if m == nil {
		return false
	}
	for _, p := range patients {
		if m.regularOnly[p] {
			return true
		}
	}
	return false
}
