package um

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Errors of a UM system. ErrUnavailable: it could not be asked or did not answer (refused, timed out, a
// non-200 answer, the breaker open). ErrBadAnswer: it answered 200 with something fhirwall will not act on.
// ErrBadRequest: the request itself cannot be put to it (it is never sent).
var (
	ErrUnavailable = errors.New("um system unavailable")
	ErrBadAnswer   = errors.New("um system answered badly")
	ErrBadRequest  = errors.New("prior-auth request not fit for the um system")
)

// StatusError is a UM system's answer other than 200. StatusCode lets internal/metrics classify it.
type StatusError struct{ Code int }

func (e *StatusError) Error() string   { return fmt.Sprintf("um system answered HTTP %d", e.Code) }
func (e *StatusError) StatusCode() int { return e.Code }
func (e *StatusError) Unwrap() error   { return ErrUnavailable }

// DefaultRemoteTimeout is a Remote's wait for an answer when none is configured: PAS 2.0.1 asks $submit to
// answer within 15 seconds, and the rules, the validator and the FHIR server take their share of those.
const DefaultRemoteTimeout = 5 * time.Second

// maxAnswerBytes bounds a UM answer: a few hundred bytes per item.
const maxAnswerBytes = 1 << 20

// The UM breaker follows the house policy for upstreams (adapters/fhirserver/breaker.go): five failures in a
// row open it for ten seconds; a caller that stops waiting is not counted at all.
const (
	breakerTrips = 5
	breakerOpen  = 10 * time.Second
)

// BreakerName names the UM breaker in fhirwall_circuit_breaker_state.
const BreakerName = "prior-auth-um"

// Remote asks the payer's UM system over HTTP (the protocol is in docs/prior-auth-rules.md), through a circuit
// breaker. It counts as the UM system's failures its non-200 answers, broken exchanges, waits longer than the
// timeout and answers it will not act on; never a caller that stopped waiting.
type Remote struct {
	url     string
	timeout time.Duration
	http    *http.Client
	breaker *gobreaker.CircuitBreaker[Result]
}

var _ Decider = (*Remote)(nil)

// NewRemote returns a Remote that POSTs to rawURL (http or https). timeout bounds each call (0:
// DefaultRemoteTimeout); client nil: a client of its own that follows no redirects.
func NewRemote(rawURL string, timeout time.Duration, client *http.Client) (*Remote, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("um system url %q: want an http or https URL", rawURL)
	}
	if timeout < 0 {
		return nil, fmt.Errorf("um system timeout %v: want 0 (default) or more", timeout)
	}
	if timeout == 0 {
		timeout = DefaultRemoteTimeout
	}
	if client == nil {
		// A redirect would resend the request to another address; the UM system's URL is configured whole.
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Remote{
		url:     rawURL,
		timeout: timeout,
		http:    client,
		breaker: gobreaker.NewCircuitBreaker[Result](gobreaker.Settings{
			Name:    BreakerName,
			Timeout: breakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.ConsecutiveFailures >= breakerTrips
			},
			IsExcluded: func(err error) bool {
				var gone *callerGone
				return errors.As(err, &gone)
			},
		}),
	}, nil
}

// Name is the breaker's name (metrics.Breaker).
func (r *Remote) Name() string { return r.breaker.Name() }

// State is the breaker's state (metrics.Breaker).
func (r *Remote) State() gobreaker.State { return r.breaker.State() }

// callerGone wraps the error of a call whose caller's context ended before the UM system answered.
type callerGone struct{ err error }

func (e *callerGone) Error() string { return e.err.Error() }
func (e *callerGone) Unwrap() error { return e.err }

// Decide asks the UM system about every item of req, and returns its answer only if it decides each of them
// once, with a verdict fhirwall knows and a reason for each denial.
func (r *Remote) Decide(ctx context.Context, req Request) (Result, error) {
	if err := checkRequest(req); err != nil {
		return Result{}, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	res, err := r.breaker.Execute(func() (Result, error) {
		res, err := r.post(ctx, req, body)
		if err != nil && ctx.Err() != nil {
			return res, &callerGone{err}
		}
		return res, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return res, err
}

func (r *Remote) post(ctx context.Context, req Request, body []byte) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	resp, err := r.http.Do(hr)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return Result{}, &StatusError{Code: resp.StatusCode}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return Result{}, fmt.Errorf("%w: reading the answer: %w", ErrUnavailable, err)
	}
	if len(raw) > maxAnswerBytes {
		return Result{}, fmt.Errorf("%w: answer larger than %d bytes", ErrBadAnswer, maxAnswerBytes)
	}
	var res Result
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&res); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	if dec.More() {
		return Result{}, fmt.Errorf("%w: data after the JSON object", ErrBadAnswer)
	}
	if err := checkAnswer(req, res); err != nil {
		return Result{}, err
	}
	return res, nil
}

// checkRequest refuses a request whose answer could not be told apart item by item.
func checkRequest(req Request) error {
	if len(req.Items) == 0 {
		return fmt.Errorf("%w: no items", ErrBadRequest)
	}
	seen := make(map[int]bool, len(req.Items))
	for _, it := range req.Items {
		if seen[it.Sequence] {
			return fmt.Errorf("%w: item sequence %d given twice", ErrBadRequest, it.Sequence)
		}
		seen[it.Sequence] = true
	}
	return nil
}

// checkAnswer accepts an answer that decides every item of req exactly once, with a final or pended verdict
// and, for each denial, a reason from X12 886. Anything else is refused rather than guessed at: a verdict
// fhirwall does not know, or an item it did not ask about, says the two sides disagree on what was asked.
func checkAnswer(req Request, res Result) error {
	want := make(map[int]bool, len(req.Items))
	for _, it := range req.Items {
		want[it.Sequence] = true
	}
	for _, it := range res.Items {
		if !want[it.Sequence] {
			return fmt.Errorf("%w: item %d was not asked about or is answered twice", ErrBadAnswer, it.Sequence)
		}
		delete(want, it.Sequence)
		switch it.Verdict {
		case Approved, Pended, NotRequired:
		case Denied:
			if it.Reason == nil || it.Reason.Code == "" || it.Reason.System != SystemDecisionReason {
				return fmt.Errorf("%w: item %d denied without a reason from %s", ErrBadAnswer, it.Sequence, SystemDecisionReason)
			}
		default:
			return fmt.Errorf("%w: item %d: verdict %.40q", ErrBadAnswer, it.Sequence, it.Verdict)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("%w: %d item(s) not answered", ErrBadAnswer, len(want))
	}
	return nil
}
