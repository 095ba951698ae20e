package priorauth

import (
	"encoding/json"
	"errors"
	"net/url"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// The Prior Authorization sandbox (config apis[] prior-auth-sandbox, docs/sandbox.md) runs $submit, $inquire
// and the Subscriptions on synthetic data only. A request reaches it when decision.Decision.Sandbox says so;
// then:
//
//   - the caller's provider (and a clinician's organisations) must be synthetic, or it acts for nobody (403);
//     the member search is narrowed to the sandbox tag and a member that is not synthetic is not found, so a
//     sandbox request never names, and is never filed under, a real member;
//   - the Claim, ClaimResponse and PDex prior authorization written to the FHIR server, the PAS response
//     Bundle's entries and a Subscription as stored carry the sandbox tag;
//   - the request is kept marked (Request.Sandbox): it is not in the review queue, the queue's figures or
//     the CMS report, the admin API does not show or decide it, and an $inquire finds it only on the sandbox
//     (a production inquiry never finds a sandbox request, nor a sandbox inquiry a real one). Items the
//     rules pend stay pended: no reviewer ever acts on synthetic data as if it were real;
//   - an answer with a body that is not synthetic is an error (503), never sent: the decision core does not
//     hold an adapter's answer to the sandbox rule, so the adapter does.

// errNotSynthetic is an adapter's own answer on a sandbox API that would carry real data: a defect, refused.
var errNotSynthetic = errors.New("priorauth: a sandbox answer carries a resource without the sandbox tag")

// tagSynthetic adds the sandbox tag to res's meta.tag (once, keeping its other tags and its profiles), and
// to every resource it holds (contained, a Bundle's entries), as datascope.Synthetic reads them.
func tagSynthetic(res map[string]any) {
	if res == nil {
		return
	}
	meta := asObj(res["meta"])
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	tags := asList(meta["tag"])
	tagged := false
	for _, t := range tags {
		tagged = tagged || asStr(asObj(t)["system"]) == datascope.EnvironmentSystem && asStr(asObj(t)["code"]) == datascope.SandboxCode
	}
	if !tagged {
		meta["tag"] = append(tags, map[string]any{"system": datascope.EnvironmentSystem, "code": datascope.SandboxCode})
	}
	for _, c := range asList(res["contained"]) {
		tagSynthetic(asObj(c))
	}
	for _, e := range asList(res["entry"]) {
		tagSynthetic(asObj(asObj(e)["resource"]))
	}
}

// narrowToSynthetic adds the sandbox tag to a search made for a sandbox request.
func narrowToSynthetic(q url.Values, sandbox bool) url.Values {
	if sandbox {
		q.Set("_tag", datascope.SandboxTag)
	}
	return q
}

// usable reports whether a request may use res: outside a sandbox anything, in it synthetic data only.
func usable(res map[string]any, sandbox bool) bool {
	return !sandbox || datascope.Synthetic(res)
}

// withSyntheticBody is d with its body's resource tagged sandbox (a Subscription a sandbox app creates is
// stored as sent); a body that is not a JSON object is left for the parser to refuse.
func withSyntheticBody(d *decision.Decision) *decision.Decision {
	var res map[string]any
	if json.Unmarshal(d.Input.Body, &res) != nil || res == nil {
		return d
	}
	tagSynthetic(res)
	b, err := json.Marshal(res)
	if err != nil {
		return d
	}
	tagged := *d
	tagged.Input.Body = b
	return &tagged
}

// checkSandboxAnswer refuses (errNotSynthetic) an answer of a sandbox request whose body is a resource that
// is not synthetic; an answer without a body, or an OperationOutcome, carries no member's data.
func checkSandboxAnswer(d *decision.Decision, ans decision.Answer) error {
	if !d.Sandbox() || len(ans.Body) == 0 {
		return nil
	}
	var res map[string]any
	if err := json.Unmarshal(ans.Body, &res); err != nil || !datascope.Synthetic(res) {
		return errNotSynthetic
	}
	return nil
}
