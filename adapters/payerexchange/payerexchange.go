// Package payerexchange supplies the Payer-to-Payer operations of CMS-0057-F that the FHIR server does not
// (HAPI FHIR removed $member-match): HRex 1.0.0 Patient/$member-match, PDex 2.1.0 Group/$bulk-member-match
// and Group/[id]/$davinci-data-export, and the opt-in facts every later data request is decided on.
//
// The decision core calls it (decision.Adapter) only after the payer-to-payer policy allowed the request;
// it reads and writes the FHIR server through fhirwall's one client of it (fhirserver.Upstream).
package payerexchange

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Name is the adapter's name in the policy's obligations.
const Name = "payer-exchange"

// Adapter answers the Payer-to-Payer operations.
type Adapter struct {
	fhir    *fhirserver.Exchanger
	jobFHIR *fhirserver.Exchanger // the bulk jobs' writes and reads: nobody waits on them
	search  *fhirserver.Searcher
	jobs    decision.JobStore
	log     *slog.Logger
	now     func() time.Time
	bulk    *bulkRunner
}

var (
	_ decision.Adapter = (*Adapter)(nil)
	_ decision.OptIns  = (*Adapter)(nil)
)

// Ports are what the adapter talks to.
type Ports struct {
	FHIR       *fhirserver.Exchanger // writes and single reads a request waits on (Upstream.Refreshes)
	Background *fhirserver.Exchanger // the bulk jobs' writes (Upstream.Jobs: a Group of 10,000 members)
	Search     *fhirserver.Searcher  // complete searches a decision or a match waits on (Upstream.Lookups)
	Jobs       decision.JobStore     // bulk-match jobs and Groups bound to their client (PostgreSQL: every replica)
}

// New returns the adapter; now nil means time.Now.
func New(p Ports, log *slog.Logger, now func() time.Time) (*Adapter, error) {
	if p.FHIR == nil || p.Background == nil || p.Search == nil || p.Jobs == nil || log == nil {
		return nil, fmt.Errorf("payerexchange: FHIR clients, searcher, job store and logger are required")
	}
	if now == nil {
		now = time.Now
	}
	a := &Adapter{fhir: p.FHIR, jobFHIR: p.Background, search: p.Search, jobs: p.Jobs, log: log, now: now}
	a.bulk = &bulkRunner{a: a, running: make(chan struct{}, bulkJobsAtOnce)}
	return a, nil
}

// Serve implements decision.Adapter; a sandbox request's answer is checked to be synthetic (sandbox.go).
func (a *Adapter) Serve(ctx context.Context, d *decision.Decision, base string) (decision.Answer, error) {
	ans, err := a.serve(ctx, d, base)
	if err == nil {
		err = synthetic.CheckAnswer(d, ans)
	}
	return ans, err
}

func (a *Adapter) serve(ctx context.Context, d *decision.Decision, base string) (decision.Answer, error) {
	payer, err := decision.PayerOf(d) // the one the decision's facts named
	if err != nil || d.Request.Operation == nil {
		return decision.Answer{}, fmt.Errorf("payerexchange: a request without a payer or an operation reached the adapter")
	}
	switch d.Request.Operation.Name {
	case "member-match":
		return a.memberMatch(ctx, d, payer)
	case "bulk-member-match":
		return a.bulk.start(ctx, d, payer, base)
	case "bulk-member-match-status":
		return a.bulk.status(ctx, d)
	case "davinci-data-export":
		return a.dataExport(ctx, d, base)
	}
	return decision.Answer{}, fmt.Errorf("payerexchange: operation %q is not this adapter's", d.Request.Operation.Name)
}

// badRequest is a 400 about the request's own content: it says nothing about any member.
func badRequest(msg string) decision.Answer {
	return decision.RefusalAnswer(outcome.Rejected.WithDiagnostics(msg), "invalid_request")
}

// resourceAnswer answers status with a FHIR JSON resource.
func resourceAnswer(status int, v any, patients []string, result string) (decision.Answer, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return decision.Answer{}, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/fhir+json;charset=utf-8")
	return decision.Answer{Status: status, Header: h, Body: b, Patients: patients, Outcome: result}, nil
}
