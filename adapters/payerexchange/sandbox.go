package payerexchange

import (
	"encoding/json"
	"errors"
	"net/url"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// The Payer-to-Payer sandbox (config apis[] payer-to-payer-sandbox, docs/sandbox.md) runs the same operations
// on synthetic data only. A request reaches it when decision.Decision.Sandbox says so; then:
//
//   - every Coverage search of a match is narrowed to the sandbox tag, and a Coverage or beneficiary that is
//     not synthetic (datascope.Synthetic) is no candidate, so a real member never matches;
//   - every resource written (the stored Consent, the result Groups) and answered (member-match-out, the
//     bulk result) carries the tag;
//   - a $davinci-data-export starts only for a synthetic Group;
//   - an answer with a body that is not synthetic is an error (503), never sent: the decision core does not
//     hold an adapter's answer to the sandbox rule, so the adapter does.

// errNotSynthetic is an adapter's own answer on a sandbox API that would carry real data: a defect, refused.
var errNotSynthetic = errors.New("payerexchange: a sandbox answer carries a resource without the sandbox tag")

// sandboxTag is the meta.tag every synthetic resource carries (datascope.SandboxTag as a Coding).
func sandboxTag() object {
	return object{"system": datascope.EnvironmentSystem, "code": datascope.SandboxCode}
}

// tagSynthetic adds the sandbox tag to res's meta.tag (once), keeping its other tags.
func tagSynthetic(res object) {
	meta := obj(res["meta"])
	if meta == nil {
		meta = object{}
		res["meta"] = meta
	}
	tags := list(meta["tag"])
	for _, t := range tags {
		if str(obj(t)["system"]) == datascope.EnvironmentSystem && str(obj(t)["code"]) == datascope.SandboxCode {
			return
		}
	}
	meta["tag"] = append(tags, sandboxTag())
}

// narrowToSynthetic adds the sandbox tag to a search of a sandbox request.
func narrowToSynthetic(q url.Values, sandbox bool) url.Values {
	if sandbox {
		q.Set("_tag", datascope.SandboxTag)
	}
	return q
}

// synthetic reports whether a sandbox request may use res: always outside a sandbox.
func synthetic(res object, sandbox bool) bool {
	return !sandbox || datascope.Synthetic(res)
}

// checkSandboxAnswer refuses (errNotSynthetic) an answer of a sandbox request whose body is a resource that
// is not synthetic; an answer without a body, or an OperationOutcome, carries no member's data.
func checkSandboxAnswer(d *decision.Decision, ans decision.Answer) error {
	if !d.Sandbox() || len(ans.Body) == 0 {
		return nil
	}
	var res object
	if err := json.Unmarshal(ans.Body, &res); err != nil || !datascope.Synthetic(res) {
		return errNotSynthetic
	}
	return nil
}
