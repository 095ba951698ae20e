package priorauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// CMS-0057-F timeframes (42 CFR 422.568, 438.210, 440.230, 457.495 as amended): 72 hours for an expedited
// request, 7 calendar days for a standard one.
const (
	ExpeditedTimeframe = 72 * time.Hour
	StandardTimeframe  = 7 * 24 * time.Hour
)

// notSubmitter is the refusal of a request whose Claim names another provider than the caller (the
// requesting provider must be the one named in the Claim, or act for its organisation).
func notSubmitter() decision.Answer {
	return decision.RefusalAnswer(outcome.Forbidden.WithDiagnostics("the Claim's provider is not the caller or an organisation it acts for"), outcomeNotSubmitter)
}

// submit answers Claim/$submit (PAS 2.0.1 §"Claim submission", OperationDefinition Claim-submit):
// structure → profile validation → who asks → insurer and member (business errors: a PAS response Bundle with
// ClaimResponse.outcome error) → the decision → the FHIR server's copies → the store → the response Bundle.
// Nothing is stored before the decision, and an error anywhere before the store answers 503 with nothing
// stored; no error path approves.
func (a *Adapter) submit(ctx context.Context, d *decision.Decision) (decision.Answer, error) {
	start, received := time.Now(), a.now().UTC() // the CMS timeframe runs from receipt
	s, err := ParseSubmission(d.Input.Body)
	if err != nil {
		return badRequest(err), nil
	}
	res, err := a.validate.Validate(ctx, ProfileRequestBundle, s.Bundle)
	if err != nil {
		return decision.Answer{}, fmt.Errorf("priorauth: validator: %w", err)
	}
	if !res.Valid {
		return invalidAnswer(res), nil
	}
	// The caller is checked before the member: a provider naming another provider's NPI learns nothing
	// about who is a member.
	who, err := a.callerOf(ctx, d)
	if errors.Is(err, decision.ErrNoProvider) {
		return notSubmitter(), nil
	}
	if err != nil {
		return decision.Answer{}, err
	}
	if _, ok := who.named(s.providerIdentifiers()); !ok {
		return notSubmitter(), nil
	}
	r := Request{ID: newRequestID(), ClientID: who.ClientID, Provider: who.Provider, OrgIdentifiers: who.orgIdentifiers(),
		ClaimIdentifier: s.Identifier, Received: received, Version: 1, Sandbox: d.Sandbox()}
	r.ClaimID, r.ClaimResponseID, r.EOBID = r.ID, r.ID, r.ID
	r.Expedited, r.DeadlineBasis = expedited(s)
	r.Deadline = received.Add(StandardTimeframe)
	if r.Expedited {
		r.Deadline = received.Add(ExpeditedTimeframe)
	}
	if !shares(Identifiers(s.Insurer.Resource), a.set.InsurerIdentifiers) {
		return a.reject(ctx, s, r, rejectParticipant, start)
	}
	member, reject, err := a.member(ctx, s, r.Sandbox)
	if err != nil {
		return decision.Answer{}, err
	}
	if reject != nil {
		return a.reject(ctx, s, r, *reject, start)
	}
	r.Patient = member
	var drug bool
	r.Items, drug = a.decide(ctx, s, r)
	r.Drug = drug || drugRequest(s)
	r.Status = statusOf(r.Items)
	if r.Status != StatusPended {
		r.DecidedAt, r.DecidedBy = a.now().UTC(), decidedBy(r.Items)
	}
	if r.ResponseBundle, err = responseBundle(s, r, nil, false, a.now()); err != nil {
		return decision.Answer{}, err
	}
	if err := a.storeOnFHIR(ctx, s, r); err != nil {
		return decision.Answer{}, err
	}
	if err := a.store.Insert(context.WithoutCancel(ctx), r); err != nil {
		a.forget(ctx, r)
		return decision.Answer{}, fmt.Errorf("priorauth: store %s: %w", r.ID, err)
	}
	a.log.Info("prior-auth request decided", "request", r.ID, "status", r.Status, "expedited", r.Expedited,
		"deadline", r.Deadline, "provider", r.Provider)
	a.observe(r, time.Since(start))
	return fhirAnswer(http.StatusOK, r.ResponseBundle, []string{bareID(r.Patient)}, string(r.Status)), nil
}

// reject answers a business error: a PAS response Bundle whose ClaimResponse has outcome error and the X12
// 901 reason (PAS 2.0.1: business errors are ClaimResponses; validation errors OperationOutcomes). It is
// kept in the store (the submitter may $inquire it) but not on the FHIR server: there is no member to file
// it under, and it is no prior authorization.
func (a *Adapter) reject(ctx context.Context, s *Submission, r Request, why Code, start time.Time) (decision.Answer, error) {
	r.Status, r.DecidedAt, r.DecidedBy = StatusError, a.now().UTC(), "rules"
	b, err := responseBundle(s, r, []Code{why}, false, a.now())
	if err != nil {
		return decision.Answer{}, err
	}
	r.ResponseBundle = b
	r.ClaimID, r.EOBID = "", ""
	if err := a.store.Insert(context.WithoutCancel(ctx), r); err != nil {
		return decision.Answer{}, fmt.Errorf("priorauth: store %s: %w", r.ID, err)
	}
	a.log.Info("prior-auth request rejected", "request", r.ID, "reason", why.Code, "provider", r.Provider)
	a.observe(r, time.Since(start))
	var patients []string
	if r.Patient != "" {
		patients = []string{bareID(r.Patient)}
	}
	return fhirAnswer(http.StatusOK, b, patients, string(StatusError)), nil
}

func (a *Adapter) observe(r Request, took time.Duration) {
	if a.observer != nil {
		a.observer.PriorAuthDecided(string(r.Status), r.Expedited, took)
	}
}

// providerIdentifiers are the identifiers of the provider the Claim names: an Organization's or
// Practitioner's own; a PractitionerRole's, its practitioner's and its organisation's.
func (s *Submission) providerIdentifiers() []string {
	ids := Identifiers(s.Provider.Resource)
	if s.Provider.Type() == "PractitionerRole" {
		for _, k := range []string{"practitioner", "organization"} {
			if e := s.ref(s.Provider, s.Provider.Resource[k]); e != nil {
				ids = append(ids, Identifiers(e.Resource)...)
			}
		}
	}
	return ids
}

// member finds the member the Claim is for: the Bundle Patient's identifier of the member system names one
// Patient on the FHIR server, whose family name matches (case and surrounding space aside); in a sandbox, a
// synthetic Patient only (sandbox.go). A reject code when it does not; an error when the FHIR server cannot
// answer.
func (a *Adapter) member(ctx context.Context, s *Submission, sandbox bool) (string, *Code, error) {
	var number string
	for _, id := range asList(s.Patient.Resource["identifier"]) {
		if o := asObj(id); asStr(o["system"]) == a.set.MemberIdentifierSystem && asStr(o["value"]) != "" {
			number = asStr(o["value"])
			break
		}
	}
	if number == "" {
		return "", &rejectSubscriberID, nil
	}
	want := a.set.MemberIdentifierSystem + "|" + number
	var found []map[string]any
	err := a.search.Search(ctx, "Patient", synthetic.Narrow(url.Values{"identifier": {want}}, sandbox), func(raw json.RawMessage) error {
		var p map[string]any
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		// Judged again on the resource: a server that ignored the parameter must not match everyone.
		if asStr(p["resourceType"]) == "Patient" && validID(asStr(p["id"])) && slices.Contains(Identifiers(p), want) && synthetic.Usable(p, sandbox) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("priorauth: member search: %w", err)
	}
	switch len(found) {
	case 0:
		return "", &rejectNotFound, nil
	case 1:
	default:
		return "", &rejectDuplicateSubs, nil
	}
	if !shares(families(s.Patient.Resource), families(found[0])) {
		return "", &rejectSubscriberNm, nil
	}
	return "Patient/" + asStr(found[0]["id"]), nil, nil
}

func families(p map[string]any) []string {
	var out []string
	for _, n := range asList(p["name"]) {
		if f := strings.ToLower(strings.TrimSpace(asStr(asObj(n)["family"]))); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// decide asks the Decider about every item and reads its answer fail-safe: an item it did not answer, an
// unknown verdict, a denial without a reason (CMS-0057-F wants a specific reason for every denial) and a
// Decider that failed all pend the item for a reviewer; nothing is approved that the Decider did not approve.
func (a *Adapter) decide(ctx context.Context, s *Submission, r Request) ([]ItemDecision, bool) {
	q := um.Request{ID: r.ID, Patient: r.Patient, Provider: r.Provider, ClaimType: s.ClaimType.Code, Expedited: r.Expedited, Sandbox: r.Sandbox}
	for _, it := range s.Items {
		ui := um.Item{Sequence: it.Sequence, Quantity: it.Quantity}
		for _, c := range it.Codes {
			ui.Codes = append(ui.Codes, um.Code{System: c.System, Code: c.Code, Display: c.Display})
		}
		q.Items = append(q.Items, ui)
	}
	res, err := a.decider.Decide(ctx, q)
	if err != nil {
		a.log.Error("prior-auth decider failed; pending every item", "request", r.ID, "error", err)
		res = um.Result{}
	}
	by := map[int]um.ItemResult{}
	for _, ir := range res.Items {
		if _, dup := by[ir.Sequence]; !dup {
			by[ir.Sequence] = ir
		}
	}
	drug := false
	var out []ItemDecision
	for _, it := range s.Items {
		d := ItemDecision{Sequence: it.Sequence, Verdict: VerdictPended, Rule: "no-decision"}
		if len(it.Codes) > 0 {
			d.Product = it.Codes[0]
		}
		if ir, ok := by[it.Sequence]; ok {
			drug = drug || ir.Drug
			if it.CodeRange {
				d.Rule = "code-range" // the rules judged its first code only: a reviewer decides the range
				out = append(out, d)
				continue
			}
			d.Rule = ir.Rule
			switch {
			case ir.Verdict == um.Approved:
				d.Verdict = VerdictApproved
			case ir.Verdict == um.Denied && ir.Reason != nil && ir.Reason.Code != "":
				d.Verdict = VerdictDenied
				d.Reason = &Code{System: ir.Reason.System, Code: ir.Reason.Code, Display: ir.Reason.Display}
			case ir.Verdict == um.NotRequired:
				d.Verdict = VerdictNotRequired
			case ir.Verdict == um.Denied:
				d.Rule = "denial-without-reason"
			}
		}
		out = append(out, d)
	}
	return out, drug
}

// statusOf is the request's status from its items (store.go Status).
func statusOf(items []ItemDecision) Status {
	approved, denied := 0, 0
	for _, it := range items {
		switch it.Verdict {
		case VerdictApproved, VerdictNotRequired:
			approved++
		case VerdictDenied:
			denied++
		default:
			return StatusPended
		}
	}
	switch {
	case denied == 0:
		return StatusApproved
	case approved == 0:
		return StatusDenied
	}
	return StatusPartial
}

func decidedBy(items []ItemDecision) string {
	for _, it := range items {
		if it.Rule == "um" {
			return "um"
		}
	}
	return "rules"
}

// expedited reads the request's urgency (fhirwall's rule; PAS defines none): X12 1338 level of service U
// (urgent) or 03 (emergency) in extension-levelOfServiceCode, or Claim.priority stat. The basis names the
// field that decided.
func expedited(s *Submission) (bool, string) {
	switch {
	case s.LevelOfService == "U" || s.LevelOfService == "03":
		return true, "levelOfServiceCode"
	case s.Priority == "stat":
		return true, "priority"
	}
	return false, "standard"
}

var hcpcsDrug = regexp.MustCompile(`^J[0-9]{4}$`)

// drugRequest: a pharmacy claim, or a line naming a drug (NDC, RxNorm, an HCPCS J code), as
// internal/datascope recognises drug prior authorizations.
func drugRequest(s *Submission) bool {
	if s.ClaimType.Code == "pharmacy" {
		return true
	}
	for _, it := range s.Items {
		for _, c := range it.Codes {
			switch {
			case c.System == "http://hl7.org/fhir/sid/ndc", c.System == "http://www.nlm.nih.gov/research/umls/rxnorm":
				return true
			case strings.HasSuffix(c.System, "://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets") && hcpcsDrug.MatchString(c.Code):
				return true
			}
		}
	}
	return false
}

// storeOnFHIR writes the Claim, ClaimResponse and PDex prior authorization in one transaction, each by PUT
// with the id fhirwall chose: all or none, and a retry overwrites rather than duplicates.
func (a *Adapter) storeOnFHIR(ctx context.Context, s *Submission, r Request) error {
	var resources []map[string]any
	if r.Version == 1 {
		resources = append(resources, a.storedClaim(s, r))
	}
	resources = append(resources, a.storedClaimResponse(s, r), a.priorAuthEOB(s, r))
	var entries []any
	for _, res := range resources {
		if r.Sandbox {
			synthetic.Tag(res)
		}
		entries = append(entries, map[string]any{"resource": res,
			"request": map[string]any{"method": "PUT", "url": asStr(res["resourceType"]) + "/" + asStr(res["id"])}})
	}
	body, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		return err
	}
	rep, err := a.fhir.Do(ctx, http.MethodPost, "", nil, nil, body)
	if err != nil {
		return fmt.Errorf("priorauth: store %s on the FHIR server: %w", r.ID, err)
	}
	if rep.Status != http.StatusOK {
		a.log.Error("the FHIR server refused a prior-auth transaction", "request", r.ID, "status", rep.Status,
			"outcome", string(rep.Body[:min(len(rep.Body), 500)]))
		return fmt.Errorf("priorauth: store %s on the FHIR server: status %d", r.ID, rep.Status)
	}
	return nil
}

// forget removes the FHIR server's copies of a request the store did not take, so no decision is shown that
// fhirwall does not track; best effort (logged), detached from the caller.
func (a *Adapter) forget(ctx context.Context, r Request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, ref := range []string{"ExplanationOfBenefit/" + r.EOBID, "ClaimResponse/" + r.ClaimResponseID, "Claim/" + r.ClaimID} {
		if rep, err := a.fhir.Do(ctx, http.MethodDelete, ref, nil, nil, nil); err != nil || rep.Status >= 300 {
			a.log.Error("could not remove an untracked prior-auth copy", "resource", ref, "error", err)
		}
	}
}

// newRequestID is a new random request id (a FHIR id).
func newRequestID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms (Go 1.24+)
	}
	return "pa-" + hex.EncodeToString(b)
}
