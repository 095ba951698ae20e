package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Enforced is what response enforcement lets leave: the status and body to send, and what the audit
// record learns from it.
type Enforced struct {
	Status     int
	Body       []byte
	Patients   []string // the patients whose data is in Body
	Categories []string // data categories of the resources in Body
	Removed    int      // resources withheld
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
	var allowed map[string]bool
	if cp := d.Policy.Obligations.Compartment; cp != nil {
		allowed = cp.Allowed()
	}
	if out, done, err := c.enforceExport(ctx, d, status, contentType, body); done { // exports.go
		return out, err
	}
	if status < 200 || status > 299 {
		return c.enforceError(d, status, contentType, body)
	}
	if len(bytes.TrimSpace(body)) == 0 { // 204, or 201 with Prefer: return=minimal
		return Enforced{Status: status, Body: body, Patients: []string{}, Categories: []string{}}, nil
	}
	if !isFHIRJSON(contentType) {
		return Enforced{}, fmt.Errorf("%w: content type %q", ErrResponse, contentType)
	}
	root, err := decodeResource(body)
	if err != nil {
		return Enforced{}, err
	}
	e := enforcer{core: c, d: d, allowedPatients: allowed, enforce: d.Policy.Obligations.Compartment != nil,
		patients: map[string]struct{}{}, categories: map[string]struct{}{}}
	rt, _ := root["resourceType"].(string)
	if rt == "Bundle" {
		if err := e.bundle(root, 0); err != nil {
			return Enforced{}, err
		}
		if err := e.bindPages(ctx, root); err != nil {
			return Enforced{}, err
		}
	} else if !e.keep(root) {
		return Enforced{Status: outcome.NotFound.Status, Body: outcome.NotFound.Body(),
			Patients: []string{}, Categories: []string{}, Removed: 1}, nil
	}
	out := Enforced{Status: status, Body: body, Patients: sortedSet(e.patients), Categories: sortedSet(e.categories),
		Removed: e.removed}
	if e.changed {
		if out.Body, err = encode(root); err != nil {
			return Enforced{}, err
		}
	}
	return out, nil
}

// enforceError passes an error answer through when it is an OperationOutcome (or empty). Under a compartment
// obligation anything else is replaced by fhirwall's own outcome for the status, so an upstream error page
// cannot carry another patient's data.
func (c *Core) enforceError(d *Decision, status int, contentType string, body []byte) (Enforced, error) {
	pass := Enforced{Status: status, Body: body, Patients: []string{}, Categories: []string{}}
	if d.Policy.Obligations.Compartment == nil {
		return pass, nil
	}
	if status == http.StatusNotFound || status == http.StatusGone {
		// HAPI's own 404 names the resource and its 410 says it existed; either would let a client tell
		// them from fhirwall's 404 for "not yours" (FHIR-NOTES: existence oracles).
		return Enforced{Status: outcome.NotFound.Status, Body: outcome.NotFound.Body(),
			Patients: []string{}, Categories: []string{}}, nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return pass, nil
	}
	if isFHIRJSON(contentType) {
		if m, err := decodeResource(body); err == nil && m["resourceType"] == "OperationOutcome" {
			return pass, nil
		}
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

func isFHIRJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/fhir+json" || mt == "application/json")
}

// decodeResource decodes a JSON object, keeping numbers as written (FHIR decimals carry their precision).
func decodeResource(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the resource", ErrResponse)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not a resource", ErrResponse)
	}
	if _, ok := m["resourceType"].(string); !ok {
		return nil, fmt.Errorf("%w: no resourceType", ErrResponse)
	}
	return m, nil
}

func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

type enforcer struct {
	core *Core
	d    *Decision
	// allowedPatients: the compartments responses may contain (the patient's own, or a provider's
	// permitted members).
	allowedPatients map[string]bool
	enforce         bool
	removed         int
	changed         bool
	patients        map[string]struct{}
	// categories of the resources kept
	categories map[string]struct{}
}

// keep says whether one resource may leave, and records what it carries when it may.
func (e *enforcer) keep(res map[string]any) bool {
	rt, _ := res["resourceType"].(string)
	if rt == "OperationOutcome" {
		return true
	}
	if rt == "" {
		return !e.enforce // a resource without a type cannot be judged
	}
	patients, inCompartment := fhir.PatientsOf(res)
	if e.enforce && !e.allowed(patients, inCompartment) {
		return false
	}
	// The API's data scope (CMS-0057-F: claims from 2016 on, no drug prior auths, non-financial claims for
	// providers) withholds like a compartment violation and may rewrite the resource in place.
	keep, changed := datascope.Apply(e.d.Policy.Obligations.DataScope, res, e.d.Time)
	if !keep {
		return false
	}
	e.changed = e.changed || changed
	for _, p := range patients {
		e.patients[p] = struct{}{}
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
		if !e.allowedPatients[p] {
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
		// Observation, say). Under an obligation it cannot be judged, so it does not leave.
		return !e.enforce, nil
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
		return !e.enforce
	}
	return e.keep(res)
}

// rewriteLinks points the Bundle's links at the API's public base (HAPI writes public links itself from
// X-Forwarded-*, so this only catches a misconfiguration).
func (e *enforcer) rewriteLinks(b map[string]any) {
	from := strings.TrimSuffix(e.core.UpstreamBase, "/")
	if from == "" || e.core.PublicBase == nil {
		return
	}
	to := strings.TrimSuffix(e.core.PublicBase(e.d.Input.API), "/")
	if to == "" || to == from {
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
		switch err := e.core.Pages.Bind(ctx, id, owner, PageTTL); {
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
