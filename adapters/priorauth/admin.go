package priorauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/fhirwall/fhirwall/internal/adminauth"
)

// The review admin API, served on the admin listener (never on the API's own listeners): the reviewers'
// queue of pended requests, one request, and a reviewer's decision. `fhirwall prior-auth` is its client.
//
//	GET  /admin/prior-auth/requests?status=pended   the queue, nearest deadline first
//	GET  /admin/prior-auth/requests/{id}            one request
//	POST /admin/prior-auth/requests/{id}/decision   an AdminDecision
//
// Every call carries `Authorization: Bearer <token>`, the content of prior_auth.admin_token_file.

// Reviewer applies a reviewer's decision to a pended request and returns it as stored: the response
// Bundle and the FHIR server's ClaimResponse updated, subscribers notified. The adapter implements it.
// Its errors, and the admin API's answers: ErrNotFound 404; ErrAlreadyDecided 409; ErrInvalidReview and
// ErrReasonRequired 422 (a decision the request cannot take); ErrNotNotified 200 with a warning, along
// with the request as stored (the decision stands).
type Reviewer interface {
	Review(ctx context.Context, id string, in ReviewInput) (Request, error)
}

var _ Reviewer = (*Adapter)(nil)

// MinAdminTokenBytes is the shortest admin token NewAdmin accepts (the stack makes 64 hex characters).
const MinAdminTokenBytes = adminauth.MinTokenBytes

// maxAdminBody bounds a decision's body: a few items and reasons are far less.
const maxAdminBody = 64 << 10

// AdminRequest is a request as the admin API shows it. The queue's entries leave out the fields marked
// "one request only".
type AdminRequest struct {
	ID              string         `json:"id"`
	ClaimIdentifier string         `json:"claim_identifier"`
	Provider        string         `json:"provider"`
	Patient         string         `json:"patient"`
	ClientID        string         `json:"client_id"`
	Received        time.Time      `json:"received"`
	Deadline        time.Time      `json:"deadline"`
	Expedited       bool           `json:"expedited"`
	DeadlineBasis   string         `json:"deadline_basis"`
	Status          Status         `json:"status"`
	Version         int            `json:"version"`
	Overdue         bool           `json:"overdue"` // the CMS deadline passed before a decision: pended past it, or decided after it
	Items           []ItemDecision `json:"items"`

	// One request only.
	Drug            bool            `json:"drug,omitempty"`
	OrgIdentifiers  []string        `json:"org_identifiers,omitempty"`
	ClaimID         string          `json:"claim_id,omitempty"`
	ClaimResponseID string          `json:"claim_response_id,omitempty"`
	EOBID           string          `json:"eob_id,omitempty"`
	Extended        bool            `json:"extended,omitempty"`
	AfterAppeal     bool            `json:"after_appeal,omitempty"`
	DecidedAt       *time.Time      `json:"decided_at,omitempty"`
	DecidedBy       string          `json:"decided_by,omitempty"`
	ResponseBundle  json.RawMessage `json:"response_bundle,omitempty"`

	// A decision's answer only: what went wrong after the decision was stored (it stands).
	Warning string `json:"warning,omitempty"`
}

// AdminDecision is the body of POST .../decision. Verdict ("approved" or "denied") applies to every item
// still pended, unless Items decide items one by one (an item's reason, when absent, is Reason). A denial
// needs a reason (CMS-0057-F: a specific reason for every denial).
type AdminDecision struct {
	Reviewer    string              `json:"reviewer"`
	Verdict     string              `json:"verdict,omitempty"`
	Reason      *Code               `json:"reason,omitempty"`
	Items       []AdminItemDecision `json:"items,omitempty"`
	Extended    bool                `json:"extended,omitempty"`
	AfterAppeal bool                `json:"after_appeal,omitempty"`
}

// AdminItemDecision is a reviewer's verdict on one item, by its Claim.item sequence.
type AdminItemDecision struct {
	Sequence int    `json:"sequence"`
	Verdict  string `json:"verdict"`
	Reason   *Code  `json:"reason,omitempty"`
}

// AdminError is the body of every refusal.
type AdminError struct {
	Error string `json:"error"`
}

// Admin verdict words; the X12 306 codes are accepted too.
const (
	AdminApproved = "approved"
	AdminDenied   = "denied"
)

type admin struct {
	rv    Reviewer
	store Store
	log   *slog.Logger
	now   func() time.Time
}

// NewAdmin returns the review admin API's handler, which serves the paths under /admin/prior-auth/. token
// is the admin token file's content; surrounding white space is not part of it. now nil is time.Now.
func NewAdmin(rv Reviewer, store Store, token []byte, log *slog.Logger, now func() time.Time) (http.Handler, error) {
	token = bytes.TrimSpace(token)
	var errs []error
	if rv == nil {
		errs = append(errs, errors.New("priorauth admin: a reviewer is required"))
	}
	if store == nil {
		errs = append(errs, errors.New("priorauth admin: a store is required"))
	}
	if log == nil {
		errs = append(errs, errors.New("priorauth admin: a logger is required"))
	}
	tok, err := adminauth.New(token)
	if err != nil {
		errs = append(errs, fmt.Errorf("priorauth admin: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	a := &admin{rv: rv, store: store, log: log, now: now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/prior-auth/requests", a.list)
	mux.HandleFunc("GET /admin/prior-auth/requests/{id}", a.get)
	mux.HandleFunc("POST /admin/prior-auth/requests/{id}/decision", a.decide)
	mux.HandleFunc("/admin/prior-auth/", func(w http.ResponseWriter, r *http.Request) {
		adminRefuse(w, http.StatusNotFound, "no such admin resource")
	})
	return tok.Require(mux, "prior-auth admin", log, adminRefuse, "unauthorized"), nil
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	if s := r.URL.Query().Get("status"); s != "" && s != string(StatusPended) {
		adminRefuse(w, http.StatusBadRequest, "the queue lists status=pended only; one decided request is GET requests/{id}")
		return
	}
	rs, err := a.store.Pended(r.Context())
	if err != nil {
		a.internal(w, "list the queue", err)
		return
	}
	now := a.now()
	out := make([]AdminRequest, len(rs))
	for i, req := range rs {
		out[i] = adminView(req, now, false)
	}
	adminWrite(w, http.StatusOK, out)
}

func (a *admin) get(w http.ResponseWriter, r *http.Request) {
	req, err := a.store.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound), err == nil && req.Sandbox: // a sandbox request is no reviewer's (sandbox.go)
		adminRefuse(w, http.StatusNotFound, ErrNotFound.Error())
	case err != nil:
		a.internal(w, "read a request", err)
	default:
		adminWrite(w, http.StatusOK, adminView(req, a.now(), true))
	}
}

func (a *admin) decide(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body AdminDecision
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		adminRefuse(w, http.StatusBadRequest, "the body is not a decision: "+adminDecodeProblem(err))
		return
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		adminRefuse(w, http.StatusBadRequest, "the body is not a decision: more than one JSON value")
		return
	}
	in, status, err := body.ReviewInput()
	if err != nil {
		adminRefuse(w, status, err.Error())
		return
	}
	// The decision is the reviewer's to finish once it started: a client hanging up must not leave the
	// ClaimResponse, the queue and the notification half done.
	res, err := a.rv.Review(context.WithoutCancel(r.Context()), id, in)
	switch {
	case errors.Is(err, ErrNotFound):
		adminRefuse(w, http.StatusNotFound, ErrNotFound.Error())
	case errors.Is(err, ErrAlreadyDecided):
		a.log.Info("prior-auth review refused: already decided", "id", id, "reviewer", in.Reviewer)
		adminRefuse(w, http.StatusConflict, ErrAlreadyDecided.Error())
	case errors.Is(err, ErrInvalidReview), errors.Is(err, ErrReasonRequired):
		adminRefuse(w, http.StatusUnprocessableEntity, adminClip(adminOneLine(err.Error())))
	case err != nil && !errors.Is(err, ErrNotNotified):
		a.internal(w, "apply a decision", err)
	default:
		a.log.Info("prior-auth review", "id", id, "reviewer", in.Reviewer, "verdict", string(in.Verdict),
			"items", len(in.Items), "status", string(res.Status), "version", res.Version,
			"extended", in.Extended, "after_appeal", in.AfterAppeal)
		v := adminView(res, a.now(), true)
		if err != nil {
			// The adapter logged the cause; the reviewer learns that subscribers were not told.
			v.Warning = ErrNotNotified.Error() + ": subscribers were not notified; the decision stands"
		}
		adminWrite(w, http.StatusOK, v)
	}
}

// ReviewInput checks d and turns it into the adapter's ReviewInput; on error, status is the HTTP status of
// the refusal (400 malformed, 422 a denial without a reason).
func (d AdminDecision) ReviewInput() (in ReviewInput, status int, err error) {
	bad := func(format string, args ...any) (ReviewInput, int, error) {
		return ReviewInput{}, http.StatusBadRequest, fmt.Errorf(format, args...)
	}
	reviewer := strings.TrimSpace(d.Reviewer)
	switch {
	case reviewer == "":
		return bad("reviewer is required: the name recorded with the decision")
	case len(reviewer) > 128 || strings.IndexFunc(reviewer, unicode.IsControl) >= 0:
		return bad("reviewer must be a name of at most 128 characters")
	case d.Verdict == "" && len(d.Items) == 0:
		return bad(`verdict ("approved" or "denied") or items is required`)
	}
	if err := adminCheckReason(d.Reason); err != nil {
		return bad("reason: %v", err)
	}
	in = ReviewInput{Reviewer: reviewer, Reason: d.Reason, Extended: d.Extended, AfterAppeal: d.AfterAppeal}
	if d.Verdict != "" {
		v, ok := adminVerdict(d.Verdict)
		if !ok {
			return bad(`verdict %q: want "approved" or "denied"`, adminClip(d.Verdict))
		}
		if v == VerdictDenied && d.Reason == nil {
			return ReviewInput{}, http.StatusUnprocessableEntity, errors.New("a denial needs a reason (CMS-0057-F: a specific reason for every denial)")
		}
		in.Verdict = v
	}
	seen := map[int]bool{}
	for _, it := range d.Items {
		v, ok := adminVerdict(it.Verdict)
		switch {
		case it.Sequence < 1:
			return bad("items: sequence %d: Claim.item sequences start at 1", it.Sequence)
		case seen[it.Sequence]:
			return bad("items: sequence %d given twice", it.Sequence)
		case !ok:
			return bad(`items: sequence %d: verdict %q: want "approved" or "denied"`, it.Sequence, adminClip(it.Verdict))
		}
		if err := adminCheckReason(it.Reason); err != nil {
			return bad("items: sequence %d: reason: %v", it.Sequence, err)
		}
		seen[it.Sequence] = true
		reason := it.Reason
		if reason == nil && v == VerdictDenied {
			if d.Reason == nil {
				return ReviewInput{}, http.StatusUnprocessableEntity, fmt.Errorf("items: sequence %d: a denial needs a reason (CMS-0057-F: a specific reason for every denial)", it.Sequence)
			}
			reason = d.Reason
		}
		in.Items = append(in.Items, ItemDecision{Sequence: it.Sequence, Verdict: v, Reason: reason, Rule: "review"})
	}
	return in, http.StatusOK, nil
}

func adminVerdict(s string) (Verdict, bool) {
	switch s {
	case AdminApproved, string(VerdictApproved):
		return VerdictApproved, true
	case AdminDenied, string(VerdictDenied):
		return VerdictDenied, true
	}
	return "", false
}

func adminCheckReason(c *Code) error {
	switch {
	case c == nil:
		return nil
	case strings.TrimSpace(c.System) == "" || strings.TrimSpace(c.Code) == "":
		return errors.New("system and code are required (X12 886 reason codes: https://codesystem.x12.org/external/886)")
	case len(c.System)+len(c.Code)+len(c.Display) > 1024:
		return errors.New("too long")
	}
	return nil
}

// adminView is req as the admin API shows it; whole adds what only one request's view carries.
func adminView(req Request, now time.Time, whole bool) AdminRequest {
	v := AdminRequest{ID: req.ID, ClaimIdentifier: req.ClaimIdentifier, Provider: req.Provider, Patient: req.Patient,
		ClientID: req.ClientID, Received: req.Received, Deadline: req.Deadline, Expedited: req.Expedited,
		DeadlineBasis: req.DeadlineBasis, Status: req.Status, Version: req.Version, Items: req.Items}
	if v.Items == nil {
		v.Items = []ItemDecision{}
	}
	switch {
	case req.Status == StatusPended:
		v.Overdue = now.After(req.Deadline)
	case !req.DecidedAt.IsZero():
		v.Overdue = req.DecidedAt.After(req.Deadline)
	}
	if !whole {
		return v
	}
	v.Drug, v.OrgIdentifiers, v.ClaimID, v.ClaimResponseID, v.EOBID = req.Drug, req.OrgIdentifiers, req.ClaimID, req.ClaimResponseID, req.EOBID
	v.Extended, v.AfterAppeal, v.DecidedBy = req.Extended, req.AfterAppeal, req.DecidedBy
	if !req.DecidedAt.IsZero() {
		at := req.DecidedAt
		v.DecidedAt = &at
	}
	if json.Valid(req.ResponseBundle) {
		v.ResponseBundle = req.ResponseBundle
	}
	return v
}

func (a *admin) internal(w http.ResponseWriter, what string, err error) {
	a.log.Error("prior-auth admin: could not "+what, "err", err)
	adminRefuse(w, http.StatusInternalServerError, "internal error: could not "+what)
}

func adminRefuse(w http.ResponseWriter, status int, msg string) {
	adminWrite(w, status, AdminError{Error: msg})
}

func adminWrite(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error: could not encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// adminDecodeProblem says what is wrong with a body without echoing much of it.
func adminDecodeProblem(err error) string {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fmt.Sprintf("larger than %d bytes", maxAdminBody)
	}
	return adminClip(adminOneLine(err.Error()))
}

func adminOneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func adminClip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
