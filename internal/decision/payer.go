package decision

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
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
	// OptedIn returns, of patients (bare Patient ids), those whose opt-in naming payer (Organization/<id>) as
	// recipient is in force at now, with what it covers. An error when it cannot answer.
	OptedIn(ctx context.Context, payer string, patients []string, now time.Time) (map[string]OptIn, error)
}

// OptIn is one member's opt-in to one payer.
type OptIn struct {
	// Sensitive: the Consent's policy is PDex/HRex #sensitive (all data); otherwise #regular, under which
	// resources labelled sensitive (datascope.Sensitive) do not leave.
	Sensitive bool
}

// PayerOf names the payer organisation a request acts for: the token's organisation, else the one the
// registry binds the client to. Never a user: Payer-to-Payer is between organisations.
func PayerOf(d *Decision) (string, error) {
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
// status or file) is held to the opt-ins of the patients its answer names, read before enforcement.
func (c *Core) payerFacts(ctx context.Context, d *Decision) (map[string]any, *membership, error) {
	payer, err := PayerOf(d)
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
	m := &membership{payer: payer, regularOnly: map[string]bool{}}
	patients := map[string]any{}
	if len(named) == 0 {
		// A request that names nobody but returns members' data (a Patient search by identifier, a page, an
		// export's status or file): whose data it is is known only from the answer, so the opt-ins of the
		// patients in it are read then (resolveOptIns), never the payer's whole list.
		m.pending = true
		facts["patients"] = patients
		return facts, m, nil
	}
	if err := c.readOptIns(ctx, m, named, d.Time); err != nil {
		return nil, nil, err
	}
	for _, p := range named {
		patients[p] = m.permits(p)
	}
	facts["patients"] = patients
	return facts, m, nil
}

// readOptIns fills m with the opt-ins of patients (bare ids) in force at now.
func (c *Core) readOptIns(ctx context.Context, m *membership, patients []string, now time.Time) error {
	in, err := c.OptIns.OptedIn(ctx, m.payer, patients, now)
	if err != nil {
		return fmt.Errorf("facts: opt-ins for %s: %w", m.payer, err)
	}
	ids := make([]string, 0, len(in))
	for id, o := range in {
		ids = append(ids, id)
		if !o.Sensitive {
			m.regularOnly[id] = true
		}
	}
	m.list = NewAttributionList("", ids)
	m.pending = false
	return nil
}

// patientInBody finds what may name a patient in an answer: a reference to Patient/<id> (relative or
// absolute) and a Patient resource's own id (the FHIR server writes resourceType, then id). It only decides
// whose opt-ins are read before enforcement; enforcement still judges every resource with fhir.PatientsOf,
// and a patient it missed here is one without an opt-in, whose data is withheld (fail closed).
var patientInBody = regexp.MustCompile(`Patient/([A-Za-z0-9\-.]{1,64})|"resourceType"\s*:\s*"Patient"\s*,\s*"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"`)

// maxOptInLookups bounds the patients one answer's opt-ins are read for; an answer naming more is refused
// (503) rather than half checked. An export file of 1,000 resources names at most 1,000.
const maxOptInLookups = 5000

// resolveOptIns reads, before an answer is enforced, the opt-ins of the patients it names, when the decision
// could not know them (payerFacts). false: they could not be read, and the answer must not leave.
func (c *Core) resolveOptIns(ctx context.Context, d *Decision, body []byte) bool {
	m := d.members
	if m == nil || !m.pending {
		return true
	}
	seen := map[string]bool{}
	var ids []string
	for _, match := range patientInBody.FindAllSubmatch(body, -1) {
		id := string(match[1])
		if id == "" {
			id = string(match[2])
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) > maxOptInLookups {
		c.Log.Error("answer names too many patients to read their opt-ins", "decision_id", d.ID, "patients", len(ids))
		return false
	}
	if err := c.readOptIns(ctx, m, ids, d.Time); err != nil {
		c.Log.Error("opt-ins unavailable", "decision_id", d.ID, "error", err)
		c.observer().UpstreamFailed(d, err)
		return false
	}
	return true
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
	return c.useFacts(ctx, d, input, facts, members, err, "no_payer_identity")
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
