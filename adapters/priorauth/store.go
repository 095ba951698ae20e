package priorauth

import (
	"context"
	"errors"
	"time"
)

// Status is where a prior-authorization request stands. A request is pended until every item has a
// decision; then it is approved (every item approved or needing no authorization), denied (every item
// denied) or partial (some of each). Error: the request was rejected for a business error (member or
// insurer unknown) and never reviewed (PAS ClaimResponse.outcome error).
type Status string

const (
	StatusPended   Status = "pended"
	StatusApproved Status = "approved"
	StatusDenied   Status = "denied"
	StatusPartial  Status = "partial"
	StatusError    Status = "error"
)

// Verdict is one item's decision, as X12 306 codes it in PAS extension-reviewAction.
type Verdict string

const (
	VerdictApproved    Verdict = "A1" // certified in total
	VerdictDenied      Verdict = "A3" // not certified
	VerdictPended      Verdict = "A4" // pending
	VerdictNotRequired Verdict = "NA" // no action required: the item needs no prior authorization
)

// Code is a coded value (a denial reason: X12 886 HCR03; a product: CPT, HCPCS, NDC).
type Code struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// ItemDecision is the decision on one Claim.item (its sequence), with the rule or reviewer that made it.
type ItemDecision struct {
	Sequence int     `json:"sequence"`
	Product  Code    `json:"product"`
	Verdict  Verdict `json:"verdict"`
	Reason   *Code   `json:"reason,omitempty"` // required for A3: CMS-0057-F asks a specific reason for every denial
	Rule     string  `json:"rule,omitempty"`   // the rule id, "um" or "review"
}

// Request is one submitted prior-authorization request as fhirwall tracks it: the review queue's row and
// what $inquire, the review endpoint, the notifications and the yearly report read.
type Request struct {
	ID string // fhirwall's id; also the id of the Claim it stored on the FHIR server

	// Who asked: the client, and the provider it acts for (Organization/<id> or Practitioner/<id> on the
	// FHIR server), with that organisation's identifiers (system|value, e.g. its NPI): the subscription filter
	// orgIdentifier matches them.
	ClientID       string
	Provider       string
	OrgIdentifiers []string

	// What was asked: the member (Patient/<id> on the FHIR server) and the PAS Claim.identifier
	// (system|value), which $inquire matches on with the provider.
	Patient         string
	ClaimIdentifier string
	Drug            bool // a drug prior authorization: never shown on the other APIs' prior auths

	// The FHIR server's copies: Claim, ClaimResponse and the PDex prior authorization (ExplanationOfBenefit
	// use=preauthorization) that Patient Access, Provider Access and Payer-to-Payer read.
	ClaimID, ClaimResponseID, EOBID string

	// CMS-0057-F timeframes: 72 hours for an expedited request, 7 calendar days for a standard one, from
	// Received. DeadlineBasis says which field made it expedited (or "standard").
	Received      time.Time
	Expedited     bool
	DeadlineBasis string
	Deadline      time.Time
	Extended      bool // the review timeframe was extended (CMS public metric)
	AfterAppeal   bool // approved after an appeal (CMS public metric)

	Status    Status
	Items     []ItemDecision
	DecidedAt time.Time // zero while pended
	DecidedBy string    // "rules", "um" or the reviewer's name

	// Version counts decisions (1 at submission); ResponseBundle is the latest PAS response Bundle (JSON),
	// what $inquire answers and a full-resource notification carries.
	Version        int
	ResponseBundle []byte

	// Sandbox: a request made on the sandbox API with synthetic data (sandbox.go). Its copies and response
	// carry the sandbox tag; it is in no review queue, queue figure or report, and no reviewer decides it.
	Sandbox bool
}

// Errors of a Store.
var (
	ErrNotFound       = errors.New("prior-auth request not found")
	ErrAlreadyDecided = errors.New("prior-auth request already decided")
)

// Store keeps the requests. PostgreSQL (every replica sees the same queue; it survives a restart), or the
// in-memory store for a one-process demo and the unit tests.
type Store interface {
	// Insert adds a new request (ID unique).
	Insert(ctx context.Context, r Request) error
	// Get returns one request.
	Get(ctx context.Context, id string) (Request, error)
	// FindByClaimIdentifier returns the latest request the provider submitted with that Claim.identifier.
	FindByClaimIdentifier(ctx context.Context, provider, claimIdentifier string) (Request, error)
	// Decide records the decision of a pended request: Status, Items, DecidedAt, DecidedBy, Version,
	// ResponseBundle and Extended/AfterAppeal from next. It fails with ErrAlreadyDecided unless the stored
	// request is pended at version next.Version-1 (two reviewers deciding at once: one wins).
	Decide(ctx context.Context, next Request) error
	// Pended lists pended requests, oldest deadline first; never a sandbox request.
	Pended(ctx context.Context) ([]Request, error)
	// Received lists the requests received in [from, to); never a sandbox request.
	Received(ctx context.Context, from, to time.Time) ([]Request, error)
}

// ReviewInput is a reviewer's decision on a pended request (the admin API and `fhirwall prior-auth decide`).
// Verdict applies to every item still pended, unless Items names items one by one; a denial needs Reason
// (CMS-0057-F: a specific reason for every denial).
type ReviewInput struct {
	Reviewer    string         `json:"reviewer"`
	Verdict     Verdict        `json:"verdict"` // VerdictApproved or VerdictDenied
	Reason      *Code          `json:"reason,omitempty"`
	Items       []ItemDecision `json:"items,omitempty"`
	Extended    bool           `json:"extended,omitempty"`
	AfterAppeal bool           `json:"after_appeal,omitempty"`
}
