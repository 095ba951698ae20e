package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Adapter answers a request itself instead of the FHIR server: the operations fhirwall supplies (Payer-to-
// Payer $member-match and $bulk-member-match, the start of a $davinci-data-export). The policy names the
// adapter in its obligations after it allowed the request; both faces call Core.Answer, so both modes give
// the same answer, and the answer is audited like any other (RecordAnswer).
type Adapter interface {
	// Serve answers d; base is the API's public base as the client reached it (for Content-Location).
	Serve(ctx context.Context, d *Decision, base string) (Answer, error)
}

// Answer is an adapter's whole answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
	// Patients are the members the answer is about (bare ids), for the audit record; Outcome is what the
	// operation concluded, for the audit record only (the client may deliberately be told less).
	Patients []string
	Outcome  string
}

// AnsweredHere reports whether an adapter, not the FHIR server, answers d.
func (d *Decision) AnsweredHere() bool {
	return d != nil && d.Allow && d.Policy.Obligations.Adapter != ""
}

// Answer runs the adapter d's obligations name. An adapter that is not configured, or that fails, yields
// an OperationOutcome (503, with Retry-After): never the FHIR server's answer to a request it was not meant
// to see.
func (c *Core) Answer(ctx context.Context, d *Decision) Answer {
	a, ok := c.Adapters[d.Policy.Obligations.Adapter]
	if !ok {
		c.Log.Error("no adapter for an allowed request; refusing", "decision_id", d.ID, "adapter", d.Policy.Obligations.Adapter)
		return RefusalAnswer(outcome.Unavailable, "error")
	}
	ans, err := a.Serve(ctx, d, c.publicBase(d))
	if err != nil {
		c.Log.Error("adapter failed", "decision_id", d.ID, "adapter", d.Policy.Obligations.Adapter, "error", err)
		c.observer().UpstreamFailed(d, err)
		return RefusalAnswer(outcome.Unavailable, "error")
	}
	if d.Sandbox() && !syntheticAnswer(ans.Body) {
		// The adapter holds a sandbox answer to synthetic data itself (adapters/synthetic); this is the core's
		// own check behind it, as for the FHIR server's answers: nothing untagged leaves a sandbox API.
		c.Log.Error("an adapter's sandbox answer holds a resource that is not synthetic; refusing", "decision_id", d.ID,
			"adapter", d.Policy.Obligations.Adapter)
		return RefusalAnswer(outcome.Unavailable, "error")
	}
	if ans.Header == nil {
		ans.Header = http.Header{}
	}
	for k, v := range AnswerHeaders(d, ans.Status, ans.Header.Get).Set {
		ans.Header.Set(k, v)
	}
	return ans
}

// RefusalAnswer is an adapter's answer that is an OperationOutcome; result is what the audit record says
// happened (Answer.Outcome).
func RefusalAnswer(r outcome.Refusal, result string) Answer {
	h := http.Header{}
	for k, v := range r.Headers() {
		h.Set(k, v)
	}
	return Answer{Status: r.Status, Header: h, Body: r.Body(), Outcome: result}
}

// RecordAnswer writes the audit record of an adapter's answer; like Record, a non-nil error means the
// answer must not be sent (503 instead).
func (c *Core) RecordAnswer(ctx context.Context, d *Decision, a Answer, took time.Duration) error {
	e := Enforced{Status: a.Status, Patients: a.Patients, outcome: a.Outcome}
	if err := c.record(ctx, d, a.Status, int64(len(a.Body)), took, &e); err != nil {
		return fmt.Errorf("adapter answer: %w", err)
	}
	return nil
}

// syntheticAnswer reports whether an adapter's answer body may leave a sandbox API: empty, a FHIR resource
// every resource of which carries the synthetic tag (datascope.Synthetic: Bundles and OperationOutcomes
// themselves excepted), or a JSON document that is no FHIR resource (a bulk manifest, whose files are served
// and checked by the core). Anything else, unreadable JSON included, may not.
func syntheticAnswer(body []byte) bool {
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return false
	}
	if _, isResource := doc["resourceType"]; !isResource {
		return true
	}
	return datascope.Synthetic(doc)
}
