package priorauth

import (
	"encoding/json"

	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// The Prior Authorization sandbox (config apis[] prior-auth-sandbox, docs/sandbox.md) runs $submit, $inquire
// and the Subscriptions on synthetic data only (adapters/synthetic). A request reaches it when
// decision.Decision.Sandbox says so; then:
//
//   - the caller's provider (and a clinician's organisations) must be synthetic, or it acts for nobody (403);
//     the member search is narrowed to the sandbox tag and a member that is not synthetic is not found, so a
//     sandbox request never names, and is never filed under, a real member;
//   - the Claim, ClaimResponse and PDex prior authorization written to the FHIR server, the PAS response
//     Bundle's entries and a Subscription as stored carry the sandbox tag;
//   - the request is kept marked (Request.Sandbox): it is not in the review queue, the queue's figures or
//     the CMS report, the admin API does not show or decide it, and an $inquire finds it only on the sandbox
//     (a production inquiry never finds a sandbox request, nor a sandbox inquiry a real one). Items the
//     rules pend, or refer to the UM system (which is never asked), stay pended: no reviewer ever acts on
//     synthetic data as if it were real;
//   - an answer with a body that is not synthetic is an error (503), never sent (Serve): the decision core
//     does not hold an adapter's answer to the sandbox rule, so the adapter does.

// withSyntheticBody is d with its body's resource tagged sandbox (a Subscription a sandbox app creates is
// stored as sent); a body that is not a JSON object is left for the parser to refuse.
func withSyntheticBody(d *decision.Decision) *decision.Decision {
	var res map[string]any
	if json.Unmarshal(d.Input.Body, &res) != nil || res == nil {
		return d
	}
	synthetic.Tag(res)
	b, err := json.Marshal(res)
	if err != nil {
		return d
	}
	tagged := *d
	tagged.Input.Body = b
	return &tagged
}
