// Package synthetic is what the adapters that answer a sandbox API themselves (payerexchange, priorauth) need
// to keep to synthetic data (docs/sandbox.md): tag what they write and answer, narrow what they search, and
// refuse to send an answer that is not synthetic. What is synthetic is internal/datascope's rule
// (datascope.Synthetic); which request is a sandbox one, internal/decision's (Decision.Sandbox).
package synthetic

import (
	"encoding/json"
	"errors"
	"net/url"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// ErrNotSynthetic is an adapter's own answer on a sandbox API that would carry a resource without the sandbox
// tag: a defect, refused (the core answers 503), never sent.
var ErrNotSynthetic = errors.New("a sandbox answer carries a resource without the sandbox tag")

// maxDepth bounds the nesting Tag walks, like datascope's (deeper is not synthetic there either).
const maxDepth = 64

// Tag adds the sandbox tag (datascope.EnvironmentSystem|SandboxCode) to res's meta.tag, once, keeping its
// other tags and its profiles, and to every resource nested in it (any object with a resourceType: contained
// resources, Bundle entries, Parameters' resources), as datascope.Synthetic walks them.
func Tag(res map[string]any) { tag(res, 0) }

func tag(res map[string]any, depth int) {
	if res == nil || depth > maxDepth {
		return
	}
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	tagged := false
	for _, t := range tags {
		c, _ := t.(map[string]any)
		tagged = tagged || c["system"] == datascope.EnvironmentSystem && c["code"] == datascope.SandboxCode
	}
	if !tagged {
		meta["tag"] = append(tags, map[string]any{"system": datascope.EnvironmentSystem, "code": datascope.SandboxCode})
	}
	for k, v := range res {
		if k != "resourceType" {
			nested(v, depth+1)
		}
	}
}

func nested(v any, depth int) {
	if depth > maxDepth {
		return
	}
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			nested(e, depth+1)
		}
	case map[string]any:
		if _, ok := t["resourceType"].(string); ok {
			tag(t, depth)
			return
		}
		for _, e := range t {
			nested(e, depth+1)
		}
	}
}

// Narrow adds the sandbox tag to a search made for a sandbox request (sandbox true); q otherwise unchanged.
func Narrow(q url.Values, sandbox bool) url.Values {
	if sandbox {
		q.Set("_tag", datascope.SandboxTag)
	}
	return q
}

// Usable reports whether a request may use res: outside a sandbox anything, in it synthetic data only.
func Usable(res map[string]any, sandbox bool) bool {
	return !sandbox || datascope.Synthetic(res)
}

// CheckAnswer refuses (ErrNotSynthetic) the answer to a sandbox request whose body is not a synthetic resource;
// an answer without a body, or an OperationOutcome, carries no member's data.
func CheckAnswer(d *decision.Decision, ans decision.Answer) error {
	if !d.Sandbox() || len(ans.Body) == 0 {
		return nil
	}
	var res map[string]any
	if err := json.Unmarshal(ans.Body, &res); err != nil || !datascope.Synthetic(res) {
		return ErrNotSynthetic
	}
	return nil
}
