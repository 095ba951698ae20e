package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/tracing"
)

// Enforced is what response enforcement lets leave: the status and body to send, and what the audit
// record learns from it.
type Enforced struct {
	Status     int
	Body       []byte
	Patients   []string // the patients whose data is in Body
	Categories []string // data categories of the resources in Body
	Removed    int      // resources withheld
	// Header holds the headers of an answer enforcement made itself (Status differs from upstream's): the ETag
	// and Last-Modified of a 304. nil means the OperationOutcome headers (outcome.Refusal.Headers).
	Header map[string]string
	// outcome: an adapter's conclusion, for the audit record (RecordAnswer).
	outcome string
}

// ErrResponse means an upstream answer could not be checked (not FHIR JSON, malformed, nested too deep); the
// faces must not send it.
var ErrResponse = errors.New("upstream response cannot be enforced")

// maxBundleDepth bounds Bundles nested in Bundles (batch-response entries holding searchsets).
const maxBundleDepth = 8

// EnforceResponse checks an upstream answer against the decision's obligations before it leaves.
// contentType is the upstream's Content-Type; body is the whole, already decoded (not gzip) body.
// A non-nil error means the body must not be sent (the faces answer 502/500 with an OperationOutcome).
//
// Under a compartment obligation (patient P, or a provider's permitted patients) only their data leaves: a single resource of anyone else becomes
// the same 404 as a missing one; Bundle entries of anyone else are removed, at every nesting level, and a
// Bundle that lost entries loses its total. Without one, the body passes. Either way paging links are
// rewritten to the API's public base and bound to the client (Core.Pages), and the patients and data
// categories of what leaves are reported. A body that was not changed is returned as the same bytes.
func (c *Core) EnforceResponse(ctx context.Context, d *Decision, status int, contentType string, body []byte) (Enforced, error) {
	ctx, span := tracing.Start(ctx, tracing.SpanResponseCheck)
	e, err := c.enforceResponse(ctx, d, status, contentType, body, jsonCodec{decodeResource, encodeSized})
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrAPI.String(d.Input.API), tracing.AttrStatus.Int(e.Status))
	}
	tracing.End(span, err)
	return e, err
}

// jsonCodec is how enforcement reads and writes answers: response_json.go's in production, encoding/json's
// in the tests that hold the two to the same results (FuzzEnforceDifferential).
type jsonCodec struct {
	decode func(body []byte) (map[string]any, error)
	encode func(v any, size int) ([]byte, error)
}

func (c *Core) enforceResponse(ctx context.Context, d *Decision, status int, contentType string, body []byte, jc jsonCodec) (Enforced, error) {
	if !c.resolveOptIns(ctx, d, body) { // payer.go
		return Enforced{Status: outcome.Unavailable.Status, Body: outcome.Unavailable.Body(), Patients: []string{}, Categories: []string{}}, nil
	}
	if out, done, err := c.enforceExport(ctx, d, status, contentType, body); done { // exports.go
		return out, err
	}
	if status < 200 || status > 299 {
		return c.enforceErrorWith(d, status, contentType, body, jc)
	}
	if len(bytes.TrimSpace(body)) == 0 { // 204, or 201 with Prefer: return=minimal
		return Enforced{Status: status, Body: body, Patients: []string{}, Categories: []string{}}, nil
	}
	if !isFHIRJSON(contentType) {
		return Enforced{}, fmt.Errorf("%w: content type %q", ErrResponse, contentType)
	}
	root, err := jc.decode(body)
	if err != nil {
		return Enforced{}, err
	}
	e := c.newEnforcer(d)
	if rt, _ := root["resourceType"].(string); rt == "Bundle" {
		if err := e.bundle(root, 0); err != nil {
			return Enforced{}, err
		}
		if refused, ok := e.counts(root); !ok {
			return e.refused(refused), nil
		}
		e.carryShape(root)
		e.ownSelfLink(root)
		if err := e.bindPages(ctx, root); err != nil {
			// A next link that is not bound answers 404 to its own client: the page store being out is an
			// outage (503, try again), and nothing of the answer leaves without its binding.
			c.Log.Error("page store unavailable; refusing", "decision_id", d.ID, "error", err)
			return e.refused(outcome.Unavailable), nil
		}
	} else {
		if !e.keep(root) {
			return e.refused(outcome.NotFound), nil
		}
		// Invariant 3: a conditional read is judged only now that the resource is known to be visible.
		if h, notModified := d.Shape.notModified(root); notModified {
			return Enforced{Status: http.StatusNotModified, Header: h, Patients: sortedSet(e.patients),
				Categories: sortedSet(e.categories)}, nil
		}
	}
	if e.shape(root) {
		e.changed = true
	}
	out := Enforced{Status: status, Body: body, Patients: sortedSet(e.patients), Categories: sortedSet(e.categories),
		Removed: e.removed}
	if e.changed {
		if out.Body, err = jc.encode(root, len(body)); err != nil {
			return Enforced{}, err
		}
	}
	return out, nil
}

// refused is enforcement's own refusal in place of the upstream answer: nothing of that answer leaves.
func (e *enforcer) refused(r outcome.Refusal) Enforced {
	return Enforced{Status: r.Status, Body: r.Body(), Patients: []string{}, Categories: []string{}, Removed: max(e.removed, 1)}
}

// enforceError passes an error answer through when it is an OperationOutcome (or empty). Under a compartment
// obligation anything else is replaced by fhirwall's own outcome for the status, so an upstream error page
// cannot carry another patient's data.
func (c *Core) enforceError(d *Decision, status int, contentType string, body []byte) (Enforced, error) {
	return c.enforceErrorWith(d, status, contentType, body, jsonCodec{decodeResource, encodeSized})
}

func (c *Core) enforceErrorWith(d *Decision, status int, contentType string, body []byte, jc jsonCodec) (Enforced, error) {
	pass := Enforced{Status: status, Body: body, Patients: []string{}, Categories: []string{}}
	if d.Policy.Obligations.Compartment == nil {
		return passOutcome(pass, contentType, false, jc)
	}
	if status == http.StatusNotFound || status == http.StatusGone || status == http.StatusNotModified {
		// HAPI's own 404 names the resource and its 410 says it existed; either would let a client tell
		// them from fhirwall's 404 for "not yours" (FHIR-NOTES: existence oracles).
		return Enforced{Status: outcome.NotFound.Status, Body: outcome.NotFound.Body(),
			Patients: []string{}, Categories: []string{}}, nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return pass, nil
	}
	if isOutcome(contentType, body, jc) {
		return passOutcome(pass, contentType, true, jc)
	}
	r, ok := outcome.ForStatus(status)
	if !ok {
		r = outcome.Refusal{Status: status, Code: "processing", Diagnostics: "the request could not be processed"}
		if status >= 500 {
			r.Code = "exception"
		}
	}
	return Enforced{Status: status, Body: r.Body(), Patients: []string{}, Categories: []string{}, Removed: 1}, nil
}

// passOutcome re-encodes an upstream OperationOutcome the way fhirwall writes its own (compact, resourceType
// first: HAPI pretty-prints), scrubbed first when scrub is set. Any other body passes as it is.
func passOutcome(pass Enforced, contentType string, scrub bool, jc jsonCodec) (Enforced, error) {
	if !isFHIRJSON(contentType) {
		return pass, nil
	}
	m, err := jc.decode(pass.Body)
	if err != nil || m["resourceType"] != "OperationOutcome" {
		return pass, nil
	}
	if !scrub || !scrubOutcome(m) {
		// Unchanged: only the whitespace goes, HAPI's member order stays (it writes resourceType first).
		var b bytes.Buffer
		if json.Compact(&b, pass.Body) == nil && bytes.HasPrefix(b.Bytes(), []byte(`{"resourceType":`)) {
			pass.Body = b.Bytes()
			return pass, nil
		}
	}
	if pass.Body, err = jc.encode(m, len(pass.Body)); err != nil {
		return Enforced{}, err
	}
	return pass, nil
}

// isOutcome reports a FHIR JSON OperationOutcome body.
func isOutcome(contentType string, body []byte, jc jsonCodec) bool {
	if !isFHIRJSON(contentType) {
		return false
	}
	m, err := jc.decode(body)
	return err == nil && m["resourceType"] == "OperationOutcome"
}

func isFHIRJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/fhir+json" || mt == "application/json")
}

type enforcer struct {
	core *Core
	d    *Decision
	// permits: whose compartments responses may contain (the patient's own, or a provider's permitted
	// members).
	permits func(patient string) bool
	// public: the types outside the Patient compartment that may leave (Obligations.PublicTypes).
	public  map[string]bool
	enforce bool
	// sandbox: only synthetic resources leave (sandbox.go), whatever the other obligations say.
	sandbox  bool
	removed  int
	changed  bool
	patients map[string]struct{}
	scratch  []string // keep's patients of one resource, one slice for the whole answer
	// categories of the resources kept
	categories map[string]struct{}
}

// newEnforcer holds one answer to d's obligations.
func (c *Core) newEnforcer(d *Decision) *enforcer {
	ob := d.Policy.Obligations
	e := &enforcer{core: c, d: d, enforce: ob.Compartment != nil, sandbox: isSandbox(d.Input.API),
		patients: map[string]struct{}{}, categories: map[string]struct{}{}}
	if cp := ob.Compartment; cp != nil {
		if cp.Provider != "" || cp.Payer != "" {
			e.permits = d.members.permits // nil membership permits nobody
		} else {
			set := cp.Allowed()
			e.permits = func(id string) bool { return set[id] }
		}
	}
	e.public = make(map[string]bool, len(ob.PublicTypes))
	for _, t := range ob.PublicTypes {
		e.public[t] = true
	}
	return e
}

// keep says whether one resource may leave, and records what it carries when it may.
func (e *enforcer) keep(res map[string]any) bool {
	rt, _ := res["resourceType"].(string)
	if e.sandbox && !datascope.Synthetic(res) {
		return false // a sandbox answers with synthetic data only, whatever the FHIR server holds
	}
	if rt == "OperationOutcome" {
		if e.enforce && scrubOutcome(res) {
			e.changed = true
		}
		// The data scope's money rule holds for outcomes too (an extension could carry an amount).
		_, changed := datascope.Apply(e.d.Policy.Obligations.DataScope, res, e.d.Time)
		e.changed = e.changed || changed
		return true
	}
	if rt == "" {
		return !e.enforce // a resource without a type cannot be judged
	}
	patients, inCompartment := fhir.AppendPatientsOf(e.scratch[:0], res)
	e.scratch = patients // reused by the next resource: patients is read only within this call
	if e.enforce && (!e.allowed(patients, inCompartment) || !e.reveals(rt, res, inCompartment)) {
		return false
	}
	if e.enforce && e.d.members.regularOnlyFor(patients) && datascope.Sensitive(res) {
		return false // a #regular opt-in does not cover sensitive data (payer.go)
	}
	if e.enforce && e.dropContained(res) {
		e.changed = true
	}
	// The API's data scope (CMS-0057-F: claims from 2016 on, no drug prior auths, non-financial claims for
	// providers) withholds like a compartment violation and may rewrite the resource in place.
	keep, changed := datascope.Apply(e.d.Policy.Obligations.DataScope, res, e.d.Time)
	if !keep {
		return false
	}
	e.changed = e.changed || changed
	for _, p := range patients {
		if _, ok := e.patients[p]; !ok {
			// A clone: p may be a substring of the decoded body (response_json.go), and the audit record
			// outlives the answer.
			e.patients[strings.Clone(p)] = struct{}{}
		}
	}
	if cat := fhir.DataCategory(rt, res); cat != "" {
		e.categories[cat] = struct{}{}
	}
	return true
}

// allowed: a compartment resource must be the patient's and nobody else's (a Group listing others, an
// Observation whose performer is another patient); a resource outside the compartment may name no other
// patient (its contained resources, a Task's "for").
func (e *enforcer) allowed(patients []string, inCompartment bool) bool {
	if inCompartment && len(patients) == 0 {
		return false
	}
	for _, p := range patients {
		if !e.permits(p) {
			return false
		}
	}
	return true
}

// bundle filters a Bundle's entries in place (searchset, history, batch/transaction-response, collection,
// document: R4 Bundle.entry.resource, and Bundle.entry.response.outcome).
func (e *enforcer) bundle(b map[string]any, depth int) error {
	if depth > maxBundleDepth {
		return fmt.Errorf("%w: Bundles nested too deep", ErrResponse)
	}
	e.rewriteLinks(b)
	raw, ok := b["entry"]
	if !ok {
		return nil
	}
	entries, ok := raw.([]any)
	if !ok {
		return fmt.Errorf("%w: Bundle.entry is not an array", ErrResponse)
	}
	kept := entries[:0:0]
	removed := 0
	for _, v := range entries {
		entry, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: Bundle.entry is not an object", ErrResponse)
		}
		ok, err := e.entry(entry, depth)
		if err != nil {
			return err
		}
		if !ok {
			removed++
			continue
		}
		kept = append(kept, entry)
	}
	if removed > 0 {
		e.removed += removed
		e.changed = true
		b["entry"] = kept
		if len(kept) == 0 {
			delete(b, "entry")
		}
		delete(b, "total") // R4 Bundle.total: a count the client can no longer check is worse than none
	}
	return nil
}

// entry judges one Bundle entry; nested Bundles are filtered rather than judged whole.
func (e *enforcer) entry(entry map[string]any, depth int) (bool, error) {
	if resp, ok := entry["response"].(map[string]any); ok {
		if oc, ok := resp["outcome"].(map[string]any); ok && !e.resource(oc, depth) {
			delete(resp, "outcome")
			e.changed = true
			e.removed++
		}
	}
	raw, ok := entry["resource"]
	if !ok {
		// A history delete or a batch answer without a body: nothing shows whose it was, yet its fullUrl,
		// request.url and response.location name a resource id (a deleted version of another patient's
		// Observation, say). Under an obligation, or in a sandbox, it cannot be judged, so it does not leave.
		return !e.enforce && !e.sandbox, nil
	}
	res, ok := raw.(map[string]any)
	if !ok {
		return false, fmt.Errorf("%w: Bundle.entry.resource is not an object", ErrResponse)
	}
	if rt, _ := res["resourceType"].(string); rt == "Bundle" {
		return true, e.bundle(res, depth+1)
	}
	return e.resource(res, depth), nil
}

func (e *enforcer) resource(res map[string]any, depth int) bool {
	if rt, _ := res["resourceType"].(string); rt == "Bundle" {
		// Only reachable through response.outcome; a Bundle there is not an outcome.
		return !e.enforce && !e.sandbox
	}
	return e.keep(res)
}

// ownSelfLink makes a search's self link the client's own request under a compartment: the FHIR server's
// names the query it was sent, with the narrowing fhirwall added (an attribution Group's id, granular
// categories), ids the client never sent (R4 §3.1.1.2: self is the search as the server understood it, and
// the client's is what the server, fhirwall, executed for it). Without a known public base it is dropped.
func (e *enforcer) ownSelfLink(b map[string]any) {
	if !e.enforce || e.d.Request.Interaction != fhir.SearchType {
		return
	}
	links, _ := b["link"].([]any)
	base := e.core.publicBase(e.d)
	kept := links[:0:0]
	for _, l := range links {
		m, _ := l.(map[string]any)
		if m["relation"] != "self" {
			kept = append(kept, l)
			continue
		}
		e.changed = true
		if base == "" {
			continue
		}
		self := base + e.d.Input.Path
		if e.d.Input.RawQuery != "" {
			self += "?" + e.d.Input.RawQuery
		}
		m["url"] = self
		kept = append(kept, m)
	}
	if len(kept) == 0 {
		delete(b, "link")
	} else {
		b["link"] = kept
	}
}

// carryShape adds the client's shaping parameters to the Bundle's paging links (Shape.shapeParams).
func (e *enforcer) carryShape(b map[string]any) {
	extra := e.d.Shape.shapeParams()
	if len(extra) == 0 {
		return
	}
	links, _ := b["link"].([]any)
	for _, l := range links {
		m, _ := l.(map[string]any)
		raw, _ := m["url"].(string)
		u, err := url.Parse(raw)
		if err != nil || !u.Query().Has("_getpages") {
			continue
		}
		q := u.Query()
		for k, v := range extra {
			q[k] = v
		}
		u.RawQuery = q.Encode()
		m["url"] = u.String()
		e.changed = true
	}
}

// rewriteLinks points the Bundle's links at the API's public base (HAPI writes public links itself from
// X-Forwarded-*, so this only catches a misconfiguration).
func (e *enforcer) rewriteLinks(b map[string]any) {
	from := strings.TrimSuffix(e.core.UpstreamBase, "/")
	to := e.core.publicBase(e.d)
	if from == "" || to == "" || to == from {
		return
	}
	links, _ := b["link"].([]any)
	for _, l := range links {
		m, _ := l.(map[string]any)
		u, _ := m["url"].(string)
		if rest, ok := strings.CutPrefix(u, from); ok && (rest == "" || rest[0] == '/' || rest[0] == '?') {
			m["url"] = to + rest
			e.changed = true
		}
	}
}

// bindPages binds every paging id in the outgoing Bundle's links to the client and patient of the search.
func (e *enforcer) bindPages(ctx context.Context, b map[string]any) error {
	if e.core.Pages == nil {
		return nil
	}
	links, _ := b["link"].([]any)
	urls := make([]string, 0, len(links))
	for _, l := range links {
		m, _ := l.(map[string]any)
		if u, ok := m["url"].(string); ok {
			urls = append(urls, u)
		}
	}
	owner := PageOwner(e.d)
	for _, id := range pageIDs(urls) {
		// A clone: id may be a substring of the decoded body (response_json.go), and a store keeps it.
		switch err := e.core.Pages.Bind(ctx, strings.Clone(id), owner, PageTTL); {
		case errors.Is(err, ErrPageBound):
			// Another client made the same search and HAPI reused its results: the links stay that
			// client's; this one's next page answers 404. The page content is enforced either way.
			e.core.Log.Warn("paging id already bound to another client", "decision_id", e.d.ID)
		case err != nil:
			return fmt.Errorf("paging binding: %w", err)
		}
	}
	return nil
}

func sortedSet(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
