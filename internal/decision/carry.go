package decision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// In Envoy mode ext_authz decides a request and ext_proc enforces its answer, and the two may run on different
// replicas (Invariant 4: a replica can die at any moment). The decision therefore travels with the request:
// ext_authz seals it (Core.Seal) into its dynamic metadata, Envoy forwards that to ext_proc
// (metadata_options.forwarding_namespaces), and ext_proc opens it (Core.Unseal). The keys are shared by every
// replica (proxy.decision_keys_file), so any replica can open what another sealed; a client never sees the
// value, and one it made up (or replayed from another request) does not open or does not match.

// Where a sealed decision travels: ext_authz's dynamic metadata namespace (its filter name, under which Envoy
// keeps what Check returns; internal/xds has ext_proc forward it) and the field in it. filters/authz writes
// it there and filters/extproc reads it from there.
const (
	CarryNamespace = "envoy.filters.http.ext_authz"
	CarryKey       = "sealed"
)

// CarryPurpose is the additional data a carried decision is sealed with: a value sealed for anything else
// (a portal cookie under the same key) never opens as a decision.
const CarryPurpose = "fhirwall-decision"

// carryVersion is the wire struct's version; a value of another version is refused, never half read.
const carryVersion = 1

// MaxCarryAge is how long after its decision a carried decision is accepted. An answer takes seconds; a
// value older than this is a replay, not a slow upstream.
const MaxCarryAge = 5 * time.Minute

// maxCarrySkew is how far in the future a decision's time may be: replicas' clocks differ a little.
const maxCarrySkew = 5 * time.Second

// Errors of Unseal. ErrCarryInvalid: the value does not open, is too old or not yet valid, or is of another
// version (500: the request must not go on). ErrCarryFacts: it opened, but the facts response enforcement
// needs could not be read again (503, like any decision without its facts).
var (
	ErrCarryInvalid = errors.New("decision: carried decision refused")
	ErrCarryFacts   = errors.New("decision: carried decision's facts unavailable")
)

// carried is the wire form of an allowed Decision. It is not Decision itself: the token (Authorization),
// the headers and the body do not travel (the body's length and SHA-256 do, so ext_proc can take the body
// from Envoy and know it is the one decided on), nor does Provider Access membership, which can be 100,000
// patients: Unseal reads it again.
type carried struct {
	V             int             `json:"v"`
	ID            string          `json:"id"`
	Time          time.Time       `json:"t"`
	Allow         bool            `json:"a"`
	Reasons       []string        `json:"r,omitempty"`
	Identity      *token.Identity `json:"idn,omitempty"`
	Request       carriedRequest  `json:"rq"`
	Policy        policy.Result   `json:"p"`
	Revision      string          `json:"pr,omitempty"` // policy.Result.Revision has no json name
	UpstreamQuery string          `json:"uq,omitempty"`
	Shape         carriedShape    `json:"s"`
	Accept        string          `json:"ua,omitempty"`
	Client        *carriedClient  `json:"c,omitempty"`
	Dropped       []string        `json:"ds,omitempty"`
	Notices       http.Header     `json:"n,omitempty"`
	Input         carriedInput    `json:"in"`
	Provider      bool            `json:"pm,omitempty"` // a Provider Access membership, read again by Unseal
	Payer         *carriedOptIns  `json:"om,omitempty"` // a Payer-to-Payer membership, which travels
	// The policy input as the audit record keeps it (Decision.PolicyInput): ext_proc writes the record of an
	// allowed request, and the facts in the input cannot be read again as they were.
	PolicyInput     string `json:"pi,omitempty"`
	PolicyTruncated bool   `json:"pt,omitempty"`
}

type carriedInput struct {
	API        string `json:"api"`
	Method     string `json:"m"`
	Path       string `json:"p"`
	RawQuery   string `json:"q,omitempty"`
	SourceIP   string `json:"ip,omitempty"`
	RequestID  string `json:"rid,omitempty"`
	Mode       string `json:"mo,omitempty"`
	BodyLimit  int    `json:"bl,omitempty"`
	PublicBase string `json:"pb,omitempty"`
	BodyLen    int    `json:"bn,omitempty"`
	BodySum    []byte `json:"bs,omitempty"` // SHA-256 of the body; nil when there is none
}

type carriedRequest struct {
	Method       string              `json:"m"`
	Interaction  fhir.Interaction    `json:"i"`
	ResourceType string              `json:"t,omitempty"`
	ID           string              `json:"id,omitempty"`
	VersionID    string              `json:"vid,omitempty"`
	Conditional  bool                `json:"c,omitempty"`
	Operation    *fhir.OperationName `json:"op,omitempty"`
	Compartment  *fhir.Compartment   `json:"cp,omitempty"`
	Params       []carriedParam      `json:"pa,omitempty"`
	Query        url.Values          `json:"q,omitempty"`
	Prefer       []string            `json:"pf,omitempty"`
}

type carriedParam struct {
	Key        string    `json:"k"`
	Name       string    `json:"n"`
	Modifier   string    `json:"m,omitempty"`
	TargetType string    `json:"tt,omitempty"`
	Chain      []string  `json:"ch,omitempty"`
	Has        *fhir.Has `json:"h,omitempty"`
	Values     []string  `json:"v,omitempty"`
}

type carriedShape struct {
	Elements         []string  `json:"e,omitempty"`
	Summary          string    `json:"s,omitempty"`
	HistoryCountZero bool      `json:"h0,omitempty"`
	IfNoneMatch      []string  `json:"inm,omitempty"`
	IfModifiedSince  time.Time `json:"ims,omitzero"`
}

type carriedClient struct {
	ID          string   `json:"id"`
	Name        string   `json:"n,omitempty"`
	Active      bool     `json:"a,omitempty"`
	APIs        []string `json:"apis,omitempty"`
	Scopes      []string `json:"sc,omitempty"`
	Tier        string   `json:"t,omitempty"`
	Org         string   `json:"o,omitempty"`
	NotifyHosts []string `json:"nh,omitempty"`
}

type carriedOptIns struct {
	Payer       string   `json:"py"`
	OptedIn     []string `json:"in,omitempty"`
	RegularOnly []string `json:"ro,omitempty"`
	Pending     bool     `json:"pd,omitempty"`
}

// carriedBody is what a carried decision knows of its request body: enough to check the body Envoy sends
// ext_proc is the one ext_authz decided on (AttachBody).
type carriedBody struct {
	n   int
	sum []byte
}

// Seal gives an allowed decision's value to carry through Envoy to ext_proc (Core.Carry's first key). A
// refusal does not travel: ext_authz answers it itself.
func (c *Core) Seal(d *Decision) (string, error) {
	if c.Carry == nil {
		return "", errors.New("decision: no carry keyring (proxy.decision_keys_file)")
	}
	if d == nil || !d.Allow {
		return "", errors.New("decision: only an allowed decision is carried")
	}
	w := toCarried(d)
	return sealCarried(&w, func(plain []byte) (string, error) { return c.Carry.Seal(CarryPurpose, plain) })
}

// toCarried is the wire form of an allowed decision.
func toCarried(d *Decision) carried {
	w := carried{
		V: carryVersion, ID: d.ID, Time: d.Time.UTC(), Allow: d.Allow, Reasons: d.Reasons, Identity: d.Identity,
		Request: carryRequest(d.Request), Policy: d.Policy, Revision: d.Policy.Revision,
		UpstreamQuery: d.UpstreamQuery, Shape: carriedShape(d.Shape), Accept: d.UpstreamAccept,
		Dropped: d.DroppedScopes, Notices: d.notices,
		PolicyInput: string(d.PolicyInput), PolicyTruncated: d.PolicyInputTruncated,
		Input: carriedInput{API: d.Input.API, Method: d.Input.Method, Path: d.Input.Path, RawQuery: d.Input.RawQuery,
			SourceIP: d.Input.SourceIP, RequestID: d.Input.RequestID, Mode: d.Input.Mode, BodyLimit: d.Input.BodyLimit,
			PublicBase: d.Input.PublicBase},
	}
	switch {
	case len(d.Input.Body) > 0:
		sum := sha256.Sum256(d.Input.Body)
		w.Input.BodyLen, w.Input.BodySum = len(d.Input.Body), sum[:]
	case d.body != nil: // a carried decision carried on again: its body may not be attached yet
		w.Input.BodyLen, w.Input.BodySum = d.body.n, d.body.sum
	}
	if cl := d.Client; cl != nil {
		cc := carriedClient(*cl)
		w.Client = &cc
	}
	if m := d.members; m != nil {
		if m.payer == "" {
			w.Provider = true
		} else {
			o := &carriedOptIns{Payer: m.payer, OptedIn: m.list.Patients, Pending: m.pending}
			for id := range m.regularOnly {
				o.RegularOnly = append(o.RegularOnly, id)
			}
			w.Payer = o
		}
	}
	return w
}

// Unseal opens a decision Seal made, on any replica. A Provider Access decision's membership (attribution
// list and opt-outs) is read again through c.Attribution and c.Consent for ProviderOf(d), both cached: response
// enforcement then holds the answer to facts at least as new as the decision's (a patient attributed or
// opted out since is judged by the newer fact, never by an older one). When they cannot answer, the error is
// ErrCarryFacts (503); any other failure is ErrCarryInvalid.
func (c *Core) Unseal(ctx context.Context, sealed string) (*Decision, error) {
	d, provider, err := c.unseal(sealed)
	if err != nil {
		return nil, err
	}
	if provider {
		if c.Attribution == nil || c.Consent == nil {
			return nil, fmt.Errorf("%w: attribution or consent source not configured", ErrCarryFacts)
		}
		who, err := ProviderOf(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCarryInvalid, err)
		}
		m, err := c.providerMembership(ctx, who)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCarryFacts, err)
		}
		d.members = m
	}
	return d, nil
}

// UnsealForRecord opens a carried decision only to write its audit record (a local reply Envoy made after
// ext_authz allowed, such as a rate limit's 429): no answer is enforced, so no membership is read.
func (c *Core) UnsealForRecord(sealed string) (*Decision, error) {
	d, _, err := c.unseal(sealed)
	return d, err
}

// unseal opens and checks a carried decision; provider reports a Provider Access membership to read again.
func (c *Core) unseal(sealed string) (*Decision, bool, error) {
	if c.Carry == nil {
		return nil, false, fmt.Errorf("%w: no carry keyring", ErrCarryInvalid)
	}
	plain, err := c.Carry.Open(CarryPurpose, sealed)
	if err != nil {
		return nil, false, ErrCarryInvalid
	}
	return c.decodeCarried(plain)
}

// decodeCarried reads what a sealed value held: it came from a replica with the key, but is checked whole.
func (c *Core) decodeCarried(plain []byte) (*Decision, bool, error) {
	w, ok := readCarried(plain)
	if !ok { // not in appendCarried's form: encoding/json decides (carry_decode.go)
		w = carried{}
		dec := json.NewDecoder(bytes.NewReader(plain))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrCarryInvalid, err)
		}
	}
	if w.V != carryVersion {
		return nil, false, fmt.Errorf("%w: version %d, want %d", ErrCarryInvalid, w.V, carryVersion)
	}
	now := c.Now()
	switch {
	case w.ID == "" || !w.Allow || w.Time.IsZero():
		return nil, false, fmt.Errorf("%w: not an allowed decision", ErrCarryInvalid)
	case now.After(w.Time.Add(MaxCarryAge)):
		return nil, false, fmt.Errorf("%w: decided %s ago, longer than %s", ErrCarryInvalid, now.Sub(w.Time).Round(time.Second), MaxCarryAge)
	case w.Time.After(now.Add(maxCarrySkew)):
		return nil, false, fmt.Errorf("%w: decided in the future", ErrCarryInvalid)
	}
	d := &Decision{
		ID: w.ID, Time: w.Time.UTC(), Allow: true, Reasons: w.Reasons, Identity: w.Identity,
		Request: w.Request.request(), Policy: w.Policy, UpstreamQuery: w.UpstreamQuery, Shape: Shape(w.Shape),
		UpstreamAccept: w.Accept, DroppedScopes: w.Dropped, notices: w.Notices, PolicyInputTruncated: w.PolicyTruncated,
		Input: Input{API: w.Input.API, Method: w.Input.Method, Path: w.Input.Path, RawQuery: w.Input.RawQuery,
			SourceIP: w.Input.SourceIP, RequestID: w.Input.RequestID, Mode: w.Input.Mode, BodyLimit: w.Input.BodyLimit,
			PublicBase: w.Input.PublicBase},
	}
	d.Policy.Revision = w.Revision
	if w.PolicyInput != "" {
		d.PolicyInput = []byte(w.PolicyInput)
	}
	if w.Input.BodyLen > 0 {
		if w.Input.BodyLen > MaxCarriedBody || len(w.Input.BodySum) != sha256.Size {
			return nil, false, fmt.Errorf("%w: body digest", ErrCarryInvalid)
		}
		d.body = &carriedBody{n: w.Input.BodyLen, sum: w.Input.BodySum}
	}
	if w.Client != nil {
		cl := Client(*w.Client)
		d.Client = &cl
	}
	if w.Provider && w.Payer != nil {
		return nil, false, fmt.Errorf("%w: two memberships", ErrCarryInvalid)
	}
	if o := w.Payer; o != nil {
		m := &membership{payer: o.Payer, list: NewAttributionList("", o.OptedIn), regularOnly: map[string]bool{}, pending: o.Pending}
		for _, id := range o.RegularOnly {
			m.regularOnly[id] = true
		}
		d.members = m
	}
	return d, w.Provider, nil
}

// MaxCarriedBody is the largest request body a carried decision may name: the largest any API accepts
// (fhir.MaxBodyBytes, or an operation's own limit such as $bulk-member-match's) is far below it.
const MaxCarriedBody = 64 << 20

// AttachBody gives a carried decision its request body, which adapters read (Input.Body), once Envoy sent it
// to ext_proc: only the very body ext_authz decided on, by length and SHA-256. Anything else is an error
// and the request must not be answered.
func (d *Decision) AttachBody(b []byte) error {
	if d.body == nil {
		return errors.New("decision: no request body was decided on")
	}
	if len(b) != d.body.n {
		return fmt.Errorf("decision: request body is %d bytes, the decision was taken on %d", len(b), d.body.n)
	}
	if sum := sha256.Sum256(b); !bytes.Equal(sum[:], d.body.sum) {
		return errors.New("decision: request body differs from the one decided on")
	}
	d.Input.Body = b
	return nil
}

// NeedsRequestBody reports whether a carried decision is answered here (an adapter: PAS $submit, Payer-to-Payer
// $member-match …) on a request body it does not hold yet: ext_proc must have Envoy send it first.
func (d *Decision) NeedsRequestBody() bool {
	return d.AnsweredHere() && d.body != nil && d.body.n > 0
}

// providerMembership reads a provider's attribution list and the opt-outs (providerFacts; Unseal).
func (c *Core) providerMembership(ctx context.Context, provider string) (*membership, error) {
	m := &membership{}
	list, err := c.Attribution.Attributed(ctx, provider)
	switch {
	case errors.Is(err, ErrNoAttribution):
	case err != nil:
		return nil, fmt.Errorf("facts: attribution of %s: %w", provider, err)
	default:
		m.list = list
	}
	if m.optedOut, err = c.Consent.OptedOut(ctx); err != nil {
		return nil, fmt.Errorf("facts: consent: %w", err)
	}
	return m, nil
}

func carryRequest(r fhir.Request) carriedRequest {
	w := carriedRequest{Method: r.Method, Interaction: r.Interaction, ResourceType: r.ResourceType, ID: r.ID,
		VersionID: r.VersionID, Conditional: r.Conditional, Operation: r.Operation, Compartment: r.Compartment,
		Query: r.Query, Prefer: r.Prefer}
	if len(r.Params) > 0 {
		w.Params = make([]carriedParam, 0, len(r.Params))
	}
	for _, p := range r.Params {
		w.Params = append(w.Params, carriedParam(p))
	}
	return w
}

func (w carriedRequest) request() fhir.Request {
	r := fhir.Request{Method: w.Method, Interaction: w.Interaction, ResourceType: w.ResourceType, ID: w.ID,
		VersionID: w.VersionID, Conditional: w.Conditional, Operation: w.Operation, Compartment: w.Compartment,
		Params: make([]fhir.Param, 0, len(w.Params)), Query: w.Query, Prefer: w.Prefer}
	for _, p := range w.Params {
		r.Params = append(r.Params, fhir.Param(p))
	}
	if r.Query == nil {
		r.Query = url.Values{}
	}
	return r
}
