package um

import "context"

// Code is a coded value: a product or service (CPT, HCPCS, NDC) or a reason (X12 886).
type Code struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Item is one Claim.item of a prior-authorization request.
type Item struct {
	Sequence int     `json:"sequence"`
	Codes    []Code  `json:"codes"` // Claim.item.productOrService codings
	Quantity float64 `json:"quantity,omitempty"`
}

// Request is what utilization management decides on.
type Request struct {
	ID        string `json:"id"`
	Patient   string `json:"patient"`  // Patient/<id> on the FHIR server
	Provider  string `json:"provider"` // Organization/<id> or Practitioner/<id>
	ClaimType string `json:"claim_type"`
	Expedited bool   `json:"expedited"`
	Items     []Item `json:"items"`
	// Sandbox: a request of the Prior Authorization sandbox (synthetic data, docs/sandbox.md). The rules
	// alone decide it: what they refer to the payer's UM system stays pended (RuleSandbox), so synthetic
	// requests never reach it. Never sent.
	Sandbox bool `json:"-"`
}

// Verdict is one item's decision.
type Verdict string

const (
	Approved    Verdict = "approved"
	Denied      Verdict = "denied"
	Pended      Verdict = "pended"
	NotRequired Verdict = "not-required"
)

// ItemResult is the decision on one item (its Sequence). A denial carries Reason; Rule names what decided
// (a rule id, "um", "um-unavailable"); Drug marks a drug item.
type ItemResult struct {
	Sequence int     `json:"sequence"`
	Verdict  Verdict `json:"verdict"`
	Reason   *Code   `json:"reason,omitempty"`
	Rule     string  `json:"rule,omitempty"`
	Drug     bool    `json:"drug,omitempty"`
}

// Result is the decision on every item of a Request, one ItemResult per item.
type Result struct {
	Items []ItemResult `json:"items"`
}

// Decider decides prior-authorization requests: the built-in rules, the payer's UM system, or both.
type Decider interface {
	Decide(ctx context.Context, r Request) (Result, error)
}
