// Package decision is fhirwall's transport-free core: it decides a request and writes its audit record.
// Envoy's ext_authz/ext_proc faces and the standalone reverse proxy all call it, so both modes answer alike.
package decision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/seal"
	"github.com/fhirwall/fhirwall/internal/smart"
	"github.com/fhirwall/fhirwall/internal/token"
	"github.com/fhirwall/fhirwall/internal/tracing"
)

// Input is one HTTP request as a face saw it. Path is below the API's FHIR base, already normalised.
type Input struct {
	API           string
	Method        string
	Path          string
	RawQuery      string
	Authorization []string
	SourceIP      string
	RequestID     string
	Mode          string // ModeEnvoy or ModeStandalone: the face that saw the request
	// Header returns every value of a request header (Content-Type, If-None-Exist, Prefer, …); nil means none.
	Header func(name string) []string
	// Body is the whole request body; a face that could not read all of it must not call Decide.
	Body []byte
	// BodyLimit is the largest body the API accepts at Path (API.BodyLimit); 0 means fhir.MaxBodyBytes.
	BodyLimit int
	// PublicBase is the API's base as this client reached it, when the face knows it (the standalone proxy:
	// its own scheme and host); "" means Core.PublicBase (public_url, Envoy's listener).
	PublicBase string
}

// headers returns every value of a request header; none when the face gave no header function.
func (in Input) headers(name string) []string {
	if in.Header == nil {
		return nil
	}
	return in.Header(name)
}

// Decision is the outcome of Decide. When Allow is false, Refusal is what the client gets.
type Decision struct {
	ID       string
	Time     time.Time
	Input    Input
	Allow    bool
	Refusal  outcome.Refusal
	Reasons  []string
	Identity *token.Identity
	Request  fhir.Request
	Policy   policy.Result
	// PolicyInput is the input the policy decided on, as the audit record keeps it (policyinput.go); nil when
	// the policy gave no verdict, or when the input passed audit.MaxPolicyInput (PolicyInputTruncated).
	PolicyInput          []byte
	PolicyInputTruncated bool
	// UpstreamQuery is the query string to send to the FHIR server: narrowed by the obligations, without
	// the parameters that shape the answer (Shape), which the core applies itself after enforcement.
	UpstreamQuery string
	Shape         Shape
	// UpstreamAccept, when set, replaces the client's Accept header upstream (both faces).
	UpstreamAccept string
	// Client is the registry's view of the caller; DroppedScopes are the token's scopes it may not hold.
	Client        *Client
	DroppedScopes []string
	// members is the Provider Access membership the decision was taken on (providerFacts); nil otherwise.
	members *membership
	// notices are the headers Core.Notices gave for this request (AnswerHeaders adds them).
	notices http.Header
	// body is the length and SHA-256 of the request body of a decision carried through Envoy (carry.go),
	// which arrives without it; nil otherwise.
	body *carriedBody
}

// Verifier checks access tokens.
type Verifier interface {
	Verify(ctx context.Context, raw string) (token.Identity, error)
}

// Policy evaluates the Rego policy set.
type Policy interface {
	Decide(ctx context.Context, input any) (policy.Result, error)
	Revision() string
}

// CompartmentChecker answers whether the resource type/id matches every narrowing parameter on the FHIR
// server; it is how a read by id is held to the narrowing obligation before response enforcement exists.
type CompartmentChecker interface {
	Matches(ctx context.Context, resourceType, id string, narrow []policy.Narrow) (bool, error)
}

// Sink makes an audit record durable; a request is answered only after Write returned nil.
type Sink interface {
	Write(ctx context.Context, r audit.Record) error
}

// Core wires the decision stages together.
type Core struct {
	Tokens      Verifier
	Policy      Policy
	Compartment CompartmentChecker
	Audit       Sink
	Log         *slog.Logger
	Now         func() time.Time
	Registry    Registry // consulted after the token verifies; nil refuses every authenticated request
	// Attribution and Consent give Provider Access its facts (providerFacts); nil fails those requests closed.
	Attribution Attribution
	Consent     Consent
	// OptIns gives Payer-to-Payer its facts (payer.go); nil fails those requests closed.
	OptIns OptIns
	// Adapters answer the requests whose obligations name them (policy.Obligations.Adapter) instead of the
	// FHIR server: the Payer-to-Payer match operations. A named adapter that is missing fails closed (503).
	Adapters map[string]Adapter
	// DryRun, when set, is a candidate policy set evaluated beside Policy on every request. It never changes
	// an answer: where the two disagree, the candidate's verdict is logged ("dry-run"), so a policy change
	// can be watched on real traffic before it is enforced.
	DryRun Policy
	// Response enforcement (response.go): UpstreamBase is the FHIR server's base URL as it writes it in
	// links (http://127.0.0.1:8090/fhir); PublicBase gives an API's public base, to which such links are
	// rewritten (nil or "" leaves them). Pages, when set, binds paging links to the client that searched.
	UpstreamBase string
	PublicBase   func(api string) string
	Pages        PageStore
	// Jobs binds bulk export jobs and their files to the client that started them (exports.go); nil binds
	// nothing, so every poll and file read answers 404 and a kick-off's answer is refused (502).
	Jobs JobStore
	// Observer is told of every decision and answer (metrics); nil observes nothing.
	Observer Observer
	// Notices gives the headers the answer of an allowed request to api on resourceType carries at now: the
	// deprecation notices' Deprecation, Sunset and Link (config.DeprecationHeaders). Both faces add them
	// through AnswerHeaders. nil adds none.
	Notices func(api, resourceType string, now time.Time) http.Header
	// Carry seals the decisions ext_authz hands to ext_proc through Envoy (carry.go); every replica has the
	// same keys (proxy.decision_keys_file). nil: Seal and Unseal fail, so Envoy mode refuses (500).
	Carry *seal.Keyring
}

// Decide runs token → classify → policy → obligations for one request. It never returns an allow on error.
func (c *Core) Decide(ctx context.Context, in Input) *Decision {
	start := time.Now()
	ctx, span := tracing.Start(ctx, tracing.SpanDecision)
	d := &Decision{ID: audit.NewID(), Time: c.Now().UTC(), Input: in, Policy: c.policyInForce()}
	c.decide(ctx, d)
	withChallenge(d)
	if span.IsRecording() {
		span.SetAttributes(decisionAttributes(d)...)
	}
	span.End()
	c.observer().Decided(d, time.Since(start))
	if !d.Allow {
		c.Log.Info("refused", "decision_id", d.ID, "api", in.API, "method", in.Method, "path", in.Path,
			"status", d.Refusal.Status, "reasons", d.Reasons)
	}
	return d
}

func (c *Core) decide(ctx context.Context, d *Decision) {
	in := d.Input
	authenticated := false
	raw, err := token.FromAuthorization(in.Authorization)
	if err == nil {
		id, verr := c.Tokens.Verify(ctx, raw)
		switch {
		case verr == nil:
			d.Identity, authenticated = &id, true
		case errors.Is(verr, token.ErrUnavailable):
			d.refuse(outcome.Unavailable, "issuer_unavailable")
			return
		default:
			c.Log.Debug("token refused", "decision_id", d.ID, "error", verr) // never the token itself
		}
	}
	if d.Identity != nil && !c.checkClient(ctx, d) {
		return
	}
	limit := in.BodyLimit
	if limit <= 0 {
		limit = fhir.MaxBodyBytes
	}
	req, err := fhir.ClassifyWithin(in.Method, in.Path, in.RawQuery, in.Header, in.Body, limit)
	if err != nil {
		switch {
		case !authenticated:
			d.refuse(outcome.Unauthenticated, "unauthenticated")
		case errors.Is(err, fhir.ErrTooLarge):
			d.refuse(outcome.TooLarge, "request_too_large")
		case errors.Is(err, fhir.ErrUnsupportedMediaType):
			d.refuse(outcome.MediaType, "unsupported_media_type")
		default:
			d.refuse(outcome.NotSupported, "unsupported_request")
		}
		return
	}
	d.Request = req
	input := withRegistry(policyInput(in.API, d.Identity, req), d)
	if !c.addFacts(ctx, d, input) {
		return
	}
	pctx, pspan := tracing.Start(ctx, tracing.SpanPolicy)
	res, err := c.Policy.Decide(pctx, input)
	if pspan.IsRecording() {
		pspan.SetAttributes(tracing.AttrPolicyRevision.String(res.Revision))
	}
	tracing.End(pspan, err)
	if c.DryRun != nil {
		c.dryRun(ctx, d, input, res, err)
	}
	if err != nil {
		c.Log.Error("policy failed", "decision_id", d.ID, "error", err)
		d.refuse(outcome.Internal, "policy_error")
		return
	}
	if res.Revision == "" { // a Policy that does not say which set decided: the one in force when Decide began
		res.Revision = d.Policy.Revision
	}
	d.Policy = res
	d.PolicyInput, d.PolicyInputTruncated = recordedInput(input)
	d.Reasons = res.Reasons
	if !res.Allow {
		d.Refusal = refusalFor(res.Status)
		if res.Details != "" {
			d.Refusal = d.Refusal.WithDiagnostics(res.Details)
		}
		return
	}
	if d.Identity == nil && req.Interaction != fhir.Capabilities && req.Interaction != fhir.SmartConfiguration {
		// Defence in depth: whatever the policy says, only the discovery documents are public.
		d.refuse(outcome.Unauthenticated, "unauthenticated")
		return
	}
	shape, refusal, reason := readShape(req, in.Header)
	if refusal != nil {
		d.refuse(*refusal, reason)
		return
	}
	d.Shape = shape
	narrowing := map[string]string{}
	if narrow := res.Obligations.Narrow; len(narrow) > 0 {
		switch req.Interaction {
		case fhir.SearchType:
			for _, n := range narrow {
				narrowing[n.Param] = n.Value
			}
		case fhir.Read:
			ok, err := c.Compartment.Matches(ctx, req.ResourceType, req.ID, narrow)
			if err != nil {
				c.Log.Error("compartment check failed", "decision_id", d.ID, "error", err)
				c.observer().UpstreamFailed(d, err)
				d.refuse(outcome.Unavailable, "compartment_check_unavailable")
				return
			}
			if !ok { // not the patient's, or not there at all: the same answer
				d.refuse(outcome.NotFound, "not_this_patient")
				return
			}
		default:
			d.refuse(outcome.NotSupported, "obligation_not_enforceable")
			return
		}
	}
	if isSandbox(in.API) && req.Interaction == fhir.SearchType {
		// Synthetic data only: the FHIR server finds only tagged resources, so the untagged ones response
		// enforcement drops do not empty pages. Set, not added: a client's own _tag cannot widen it.
		narrowing["_tag"] = datascope.SandboxTag
	}
	d.UpstreamQuery = upstreamQuery(in.RawQuery, req, shape, narrowing)
	d.UpstreamAccept = upstreamAccept(req, in.headers("Accept"))
	if c.Notices != nil {
		d.notices = c.Notices(in.API, req.ResourceType, d.Time)
	}
	d.Allow = true
}

// dryRun evaluates the candidate policy set and logs where it would have answered otherwise.
func (c *Core) dryRun(ctx context.Context, d *Decision, input any, enforced policy.Result, enforcedErr error) {
	cand, err := c.DryRun.Decide(ctx, input)
	switch {
	case err != nil && enforcedErr == nil:
		c.Log.Warn("dry-run: candidate policy failed", "decision_id", d.ID, "candidate_revision", c.DryRun.Revision(), "error", err)
	case err == nil && (enforcedErr != nil || cand.Allow != enforced.Allow || cand.Status != enforced.Status):
		verdict := "would allow"
		if !cand.Allow {
			verdict = "would refuse"
		}
		c.Log.Warn("dry-run: candidate policy "+verdict, "decision_id", d.ID, "api", d.Input.API,
			"method", d.Input.Method, "path", d.Input.Path,
			"enforced_allow", enforced.Allow, "enforced_status", enforced.Status, "enforced_reasons", enforced.Reasons,
			"candidate_allow", cand.Allow, "candidate_status", cand.Status, "candidate_reasons", cand.Reasons,
			"candidate_revision", cand.Revision)
	}
}

// decisionAttributes are what a decision's span says of it: the request's kind and the verdict, never who
// asked or about whom.
func decisionAttributes(d *Decision) []attribute.KeyValue {
	verdict, status := "allow", 0
	if !d.Allow {
		verdict, status = "refuse", d.Refusal.Status
	}
	return []attribute.KeyValue{
		tracing.AttrDecisionID.String(d.ID), tracing.AttrAPI.String(d.Input.API),
		tracing.AttrInteraction.String(string(d.Request.Interaction)), tracing.AttrResourceType.String(d.Request.ResourceType),
		tracing.AttrDecision.String(verdict), tracing.AttrStatus.Int(status), tracing.Reasons(d.Reasons),
	}
}

// Refuse records a refusal decided before the core could run (no API at this path, say).
func (c *Core) Refuse(in Input, r outcome.Refusal, reason string) *Decision {
	d := &Decision{ID: audit.NewID(), Time: c.Now().UTC(), Input: in, Policy: c.policyInForce()}
	d.refuse(r, reason)
	c.observer().Decided(d, 0)
	return d
}

// policyInForce is an empty result that names the policy set in force now, so a decision refused before
// the policy ran still records the revision it was decided under.
func (c *Core) policyInForce() policy.Result {
	if c.Policy == nil {
		return policy.Result{}
	}
	return policy.Result{Revision: c.Policy.Revision()}
}

func (d *Decision) refuse(r outcome.Refusal, reason string) {
	d.Allow, d.Refusal = false, r
	d.Reasons = append(d.Reasons, reason)
}

// refusalFor maps a policy status to the one refusal used for it; an unexpected status is a 403.
func refusalFor(status int) outcome.Refusal {
	if r, ok := outcome.ForStatus(status); ok {
		return r
	}
	return outcome.Forbidden
}

func policyInput(api string, id *token.Identity, req fhir.Request) map[string]any {
	in := map[string]any{
		"api":           api,
		"authenticated": id != nil,
		"request":       req.PolicyInput(),
	}
	if id != nil {
		set := smart.ParseSet(strings.Join(id.Scopes, " "))
		scopes := make([]any, 0, len(set.Resource))
		for _, s := range set.Resource {
			p := s.Permissions
			sc := map[string]any{"raw": s.Raw, "context": string(s.Context), "resource_type": s.ResourceType,
				"permissions": map[string]any{"c": p.Create, "r": p.Read, "u": p.Update, "d": p.Delete, "s": p.Search}}
			if s.Params != nil {
				sc["params"] = paramsInput(s.Params)
			}
			scopes = append(scopes, sc)
		}
		in["identity"] = map[string]any{"client_id": id.ClientID, "subject": id.Subject, "patient": id.Patient,
			"fhir_user": id.FHIRUser, "scopes": scopes, "other_scopes": toAny(set.Other)}
		if id.Patient == "" {
			delete(in["identity"].(map[string]any), "patient")
		}
	}
	return in
}

func paramsInput(v url.Values) map[string]any {
	m := make(map[string]any, len(v))
	for k, vals := range v {
		m[k] = toAny(vals)
	}
	return m
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// AuditTimeout bounds one audit write; past it the request is refused as if the sink were down.
const AuditTimeout = 1500 * time.Millisecond

// Record writes the audit record of a finished request: status is what the client received.
// It runs detached from the caller's context so a client hanging up cannot lose the record.
func (c *Core) Record(ctx context.Context, d *Decision, status int, bytes int64, upstream time.Duration) error {
	return c.record(ctx, d, status, bytes, upstream, nil)
}

// RecordEnforced is Record for a response that went through EnforceResponse: the status is e.Status, and the
// record's patients and data categories are those e says were returned (when e sets them).
func (c *Core) RecordEnforced(ctx context.Context, d *Decision, e Enforced, bytes int64, upstream time.Duration) error {
	return c.record(ctx, d, e.Status, bytes, upstream, &e)
}

func (c *Core) record(ctx context.Context, d *Decision, status int, bytes int64, upstream time.Duration, e *Enforced) error {
	// PolicyRevision: the set that decided, not the one in force now; a reload between decision and answer
	// must not make the record name rules that were never applied to this request.
	r := audit.Record{
		Schema: audit.SchemaVersion, Kind: audit.KindAccess, ID: audit.NewID(), Time: d.Time, API: d.Input.API, DecisionID: d.ID,
		Allow: d.Allow, Reasons: nonNil(d.Reasons), PolicyRevision: d.Policy.Revision,
		Scopes: []string{}, Patients: []string{}, Method: d.Input.Method, Path: d.Input.Path,
		Query:        audit.RedactQuery(d.Input.RawQuery),
		ResourceType: d.Request.ResourceType, Interaction: string(d.Request.Interaction),
		SourceIP: d.Input.SourceIP, RequestID: d.Input.RequestID, Status: status,
		DataCategories: []string{}, Bytes: bytes, UpstreamMillis: float64(upstream.Microseconds()) / 1000,
		TraceID: tracing.TraceID(ctx),
		Policy:  d.policyVerdict(),
	}
	if id := d.Identity; id != nil {
		r.ClientID, r.Subject, r.FHIRUser, r.TokenJTI, r.Scopes = id.ClientID, id.Subject, id.FHIRUser, id.JTI, nonNil(id.Scopes)
	}
	if cp := d.Policy.Obligations.Compartment; cp != nil && cp.Patient != "" {
		r.Patients = []string{cp.Patient}
	} else if d.Identity != nil && d.Identity.Patient != "" {
		r.Patients = []string{d.Identity.Patient} // the patient a refused request was made for
	}
	if d.Allow && status >= 200 && status < 300 {
		r.DataCategories = audit.DataCategories(d.Request.ResourceType)
	}
	// What actually left, rather than what the request asked for; nil means enforcement did not say.
	if e != nil && e.Patients != nil {
		r.Patients = e.Patients
	}
	if e != nil && e.Categories != nil {
		r.DataCategories = e.Categories
	}
	if e != nil {
		r.Outcome = e.outcome
	}
	// Shorter than Envoy's ext_proc message timeout (2 s): a slow sink yields fhirwall's own 503 rather than
	// an Envoy timeout. A record made durable just after the deadline stays: an extra record of an answer the
	// client did not get (it got a 503), never a missing one.
	ctx, span := tracing.Start(ctx, tracing.SpanAuditWrite)
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrAPI.String(d.Input.API), tracing.AttrStatus.Int(status))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AuditTimeout)
	defer cancel()
	err := c.Audit.Write(ctx, r)
	tracing.End(span, err)
	c.observer().Answered(d, answeredStatus(status, err))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
