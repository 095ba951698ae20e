// Package priorauth is the Prior Authorization API of CMS-0057-F: Da Vinci PAS 2.0.1 Claim/$submit and
// Claim/$inquire, the decision of each request (the UM seam), its copies on the FHIR server (Claim,
// ClaimResponse and the PDex prior authorization the other APIs show), the review of pended requests and the
// Subscriptions that announce their decisions.
//
// The decision core calls it (decision.Adapter) only after the prior-auth policy allowed the request; it reads
// and writes the FHIR server through fhirwall's one client of it (fhirserver.Exchanger, fhirserver.Searcher).
package priorauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/adapters/priorauth/subscriptions"
	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	"github.com/fhirwall/fhirwall/adapters/profilevalidator"
	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Name is the adapter's name in the policy's obligations.
const Name = "prior-auth"

// Validator checks a resource against a profile (the long-lived HAPI validator service). An error means it
// could not judge (down, timed out): the request is refused with 503, never accepted unvalidated.
type Validator interface {
	Validate(ctx context.Context, profile string, resource []byte) (profilevalidator.Result, error)
}

// Decider decides the items of a request: the built-in rules, the payer's UM system behind its breaker, or
// both. A UM system that cannot answer is its business: it pends the items, never approves them.
type Decider interface {
	Decide(ctx context.Context, r um.Request) (um.Result, error)
}

// SubscriptionServer answers the Subscription interactions of the API (Subscriptions Backport R4 rest-hook).
type SubscriptionServer interface {
	Serve(ctx context.Context, d *decision.Decision, owner subscriptions.Owner, base string) (decision.Answer, error)
}

// Notifier announces a decided request to the subscriptions whose filter names its provider.
type Notifier interface {
	Decided(ctx context.Context, ev subscriptions.Event) error
}

// Observer is told of every decision (metrics); nil observes nothing.
type Observer interface {
	PriorAuthDecided(status string, expedited bool, took time.Duration)
}

var (
	_ decision.Adapter = (*Adapter)(nil)
	_ Decider          = um.Decider(nil)
)

// Ports are what the adapter talks to.
type Ports struct {
	FHIR          *fhirserver.Exchanger // writes and reads a request waits on (Upstream.Refreshes)
	Search        *fhirserver.Searcher  // complete searches (Upstream.Lookups): the member, a practitioner's roles
	Store         Store                 // the requests and the review queue (PostgreSQL: every replica)
	Validator     Validator
	Decider       Decider
	Subscriptions SubscriptionServer
	Notifier      Notifier
	Observer      Observer // nil: none
	Log           *slog.Logger
	Now           func() time.Time // nil: time.Now
}

// Settings are the payer's own facts (config prior_auth).
type Settings struct {
	Insurer                string   // this payer on the FHIR server, Organization/<id>
	InsurerIdentifiers     []string // system|value: the Bundle's insurer Organization must carry one
	MemberIdentifierSystem string   // the Bundle Patient's identifier of this system names our member
}

// Adapter answers the Prior Authorization API's operations.
type Adapter struct {
	fhir     *fhirserver.Exchanger
	search   *fhirserver.Searcher
	store    Store
	validate Validator
	decider  Decider
	subs     SubscriptionServer
	notifier Notifier
	observer Observer
	log      *slog.Logger
	now      func() time.Time
	set      Settings
}

// New returns the adapter; it refuses a missing dependency rather than fail at the first request.
func New(p Ports, s Settings) (*Adapter, error) {
	var errs []error
	for _, m := range []struct {
		missing bool
		what    string
	}{
		{p.FHIR == nil, "FHIR exchanger"}, {p.Search == nil, "FHIR searcher"}, {p.Store == nil, "store"},
		{p.Validator == nil, "validator"}, {p.Decider == nil, "decider"}, {p.Subscriptions == nil, "subscription server"},
		{p.Notifier == nil, "notifier"}, {p.Log == nil, "logger"},
		{!strings.HasPrefix(s.Insurer, "Organization/") || !validID(strings.TrimPrefix(s.Insurer, "Organization/")), "insurer (Organization/<id>)"}, {len(s.InsurerIdentifiers) == 0, "insurer identifiers"},
		{s.MemberIdentifierSystem == "", "member identifier system"},
	} {
		if m.missing {
			errs = append(errs, fmt.Errorf("priorauth: %s is required", m.what))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	now := p.Now
	if now == nil {
		now = time.Now
	}
	return &Adapter{fhir: p.FHIR, search: p.Search, store: p.Store, validate: p.Validator, decider: p.Decider,
		subs: p.Subscriptions, notifier: p.Notifier, observer: p.Observer, log: p.Log, now: now, set: s}, nil
}

// Serve implements decision.Adapter: Claim/$submit, Claim/$inquire and the Subscription interactions. A
// sandbox request's answer is checked to be synthetic (sandbox.go).
func (a *Adapter) Serve(ctx context.Context, d *decision.Decision, base string) (decision.Answer, error) {
	ans, err := a.serve(ctx, d, base)
	if err == nil {
		err = synthetic.CheckAnswer(d, ans)
	}
	return ans, err
}

func (a *Adapter) serve(ctx context.Context, d *decision.Decision, base string) (decision.Answer, error) {
	r := d.Request
	switch {
	case r.ResourceType == "Subscription":
		who, err := a.callerOf(ctx, d)
		if errors.Is(err, decision.ErrNoProvider) {
			return decision.RefusalAnswer(outcome.Forbidden, "no_provider_identity"), nil
		}
		if err != nil {
			return decision.Answer{}, err
		}
		if d.Sandbox() && len(d.Input.Body) > 0 {
			d = withSyntheticBody(d)
		}
		return a.subs.Serve(ctx, d, who.owner(d), base)
	case r.ResourceType == "Claim" && r.Operation != nil && r.Operation.Name == "submit":
		return a.submit(ctx, d)
	case r.ResourceType == "Claim" && r.Operation != nil && r.Operation.Name == "inquire":
		return a.inquire(ctx, d)
	}
	return decision.Answer{}, fmt.Errorf("priorauth: %s %s is not this adapter's", r.Method, r.ResourceType)
}

// Outcomes of the audit record (decision.Answer.Outcome) besides the Status values.
const (
	outcomeInvalid      = "invalid_request"
	outcomeNotSubmitter = "not_submitter"
	outcomeNotFound     = "not_found"
)

// badRequest is a 400 about the Bundle's own structure.
func badRequest(err error) decision.Answer {
	return decision.RefusalAnswer(outcome.Rejected.WithDiagnostics(err.Error()), outcomeInvalid)
}

// fhirAnswer answers status with a FHIR JSON body.
func fhirAnswer(status int, body []byte, patients []string, result string) decision.Answer {
	h := http.Header{}
	h.Set("Content-Type", "application/fhir+json;charset=utf-8")
	return decision.Answer{Status: status, Header: h, Body: body, Patients: patients, Outcome: result}
}

// invalidAnswer is the validator's OperationOutcome with 400 (PAS 2.0.1: a non-conformant Bundle gets a 4xx
// with an OperationOutcome, no ClaimResponse).
func invalidAnswer(res profilevalidator.Result) decision.Answer {
	if !json.Valid(res.Outcome) {
		return decision.RefusalAnswer(outcome.Rejected.WithDiagnostics("the Bundle does not conform to its PAS profile"), outcomeInvalid)
	}
	return fhirAnswer(http.StatusBadRequest, res.Outcome, nil, outcomeInvalid)
}

// notFound is the one answer for "unknown" and "not yours" (Invariant 3).
func notFound() decision.Answer {
	return decision.RefusalAnswer(outcome.NotFound, outcomeNotFound)
}

// bareID is "member-01" of "Patient/member-01".
func bareID(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '/' {
			return ref[i+1:]
		}
	}
	return ref
}
