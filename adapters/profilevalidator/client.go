// Package profilevalidator asks the FHIR profile validator service (test/tools/fhir-validator in serve mode,
// HAPI's instance validator with the IG packages loaded once) whether a resource conforms to a profile. The
// prior-auth API validates every PAS request Bundle with it before anything is stored.
//
// The service's answer is only ever an OperationOutcome whose issues carry the verdict. Anything else (no
// answer, a non-200 status, a body that is not an OperationOutcome, an open breaker) is an error, never a
// verdict: the caller answers 503 and accepts nothing unvalidated (PAS 2.0.1 §Error handling: 5xx is
// retryable).
package profilevalidator

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

const (
	// MaxResource is the largest resource the service accepts (it answers 413 above it).
	MaxResource = 16 << 20
	// maxAnswer bounds what is read of an answer: an OperationOutcome for a 16 MiB Bundle full of issues
	// stays far below it, and a bigger answer is not one.
	maxAnswer = 8 << 20
	// DefaultTimeout bounds one validation when Settings.Timeout is zero. The service answers a PAS Bundle in
	// well under a second once warm; PAS asks the whole $submit within 15 s.
	DefaultTimeout = 10 * time.Second

	breakerName = "profile-validator"
	// The house breaker policy (adapters/fhirserver/breaker.go): five failures of the service in a row open
	// it for ten seconds; a caller that stops waiting is not counted at all.
	breakerTrips = 5
	breakerOpen  = 10 * time.Second
)

var (
	// ErrUnavailable: the service gave no verdict. Every error Validate returns wraps it; the caller
	// answers 503 unless it recognises a finer kind below.
	ErrUnavailable = errors.New("profile validator unavailable")
	// ErrRefusedInput: the service refused the resource itself (not a JSON object, or larger than
	// MaxResource) rather than judging it. It says nothing about the service's health, so the breaker does
	// not count it. Wrapped together with ErrUnavailable.
	ErrRefusedInput = errors.New("profile validator refused the input")
	// ErrNoProfile: Validate was called without a profile. A resource checked only against the profiles it
	// claims for itself proves nothing.
	ErrNoProfile = errors.New("profile validator: no profile named")
)

// Settings configure a Client (config prior_auth.validator).
type Settings struct {
	// URL is the service's base URL, e.g. http://127.0.0.1:8095.
	URL string
	// Timeout bounds one validation, connection included. Zero: DefaultTimeout.
	Timeout time.Duration
	// Client makes the calls; nil: a client of its own that does not follow redirects.
	Client *http.Client
}

// Client is the one client of the validator service (ARCHITECTURE Invariant 6), shared by every request.
type Client struct {
	endpoint string // <URL>/validate
	timeout  time.Duration
	http     *http.Client
	breaker  *gobreaker.CircuitBreaker[Result]
}

// New checks s and builds the Client; it does not call the service.
func New(s Settings) (*Client, error) {
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("profile validator: url %q is not an http(s) base URL", s.URL)
	}
	if s.Timeout < 0 {
		return nil, fmt.Errorf("profile validator: negative timeout %v", s.Timeout)
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	hc := s.Client
	if hc == nil {
		hc = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			// The service never redirects; an answer that does is not its answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Client{
		endpoint: u.JoinPath("validate").String(),
		timeout:  timeout,
		http:     hc,
		breaker:  newBreaker(),
	}, nil
}

func newBreaker() *gobreaker.CircuitBreaker[Result] {
	return gobreaker.NewCircuitBreaker[Result](gobreaker.Settings{
		Name:    breakerName,
		Timeout: breakerOpen, // open → half-open after this long
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= breakerTrips
		},
		// Neither a caller that stopped waiting nor a refused input says anything about the service: counting
		// them as failures lets a few clients open the breaker for everybody, counting them as successes resets
		// a real run of failures.
		IsExcluded: func(err error) bool {
			var gone *callerGone
			return errors.As(err, &gone) || errors.Is(err, ErrRefusedInput)
		},
	})
}

// Name names the breaker in the fhirwall_circuit_breaker_state metric (internal/metrics.WatchBreakers).
func (c *Client) Name() string { return breakerName }

// State is the breaker's state.
func (c *Client) State() gobreaker.State { return c.breaker.State() }

// callerGone wraps the error of a call whose caller's context ended before the service answered.
type callerGone struct{ err error }

func (e *callerGone) Error() string { return e.err.Error() }
func (e *callerGone) Unwrap() error { return e.err }

// errTimeout is the cause of the per-call deadline: its expiry is the service being too slow, and counts.
var errTimeout = errors.New("profile validator: timeout")

// Validate asks the service whether resource (JSON) conforms to profile (a canonical URL, optionally
// |version). A nil error means the service judged it: Result says how. Every error wraps ErrUnavailable.
func (c *Client) Validate(ctx context.Context, profile string, resource []byte) (Result, error) {
	if profile == "" {
		return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, ErrNoProfile)
	}
	if len(resource) > MaxResource {
		return Result{}, fmt.Errorf("%w: %w: resource of %d bytes, over %d", ErrUnavailable, ErrRefusedInput, len(resource), MaxResource)
	}
	r, err := c.breaker.Execute(func() (Result, error) {
		r, err := c.call(ctx, profile, resource)
		if err != nil && ctx.Err() != nil {
			return r, &callerGone{err}
		}
		return r, err
	})
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return r, nil
}

func (c *Client) call(ctx context.Context, profile string, resource []byte) (Result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+"?"+url.Values{"profile": {profile}}.Encode(), bytes.NewReader(resource))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(context.Cause(ctx), errTimeout) {
			return Result{}, fmt.Errorf("%w after %v", errTimeout, c.timeout)
		}
		return Result{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return Result{}, fmt.Errorf("reading the answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusRequestEntityTooLarge:
		return Result{}, fmt.Errorf("%w: status %d", ErrRefusedInput, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return Result{}, fmt.Errorf("status %d", resp.StatusCode)
	case len(body) > maxAnswer:
		return Result{}, fmt.Errorf("answer over %d bytes", maxAnswer)
	}
	return parseOutcome(body)
}

// parseOutcome reads the service's answer. It must be an OperationOutcome with at least one issue (FHIR R4
// OperationOutcome.issue 1..*), each of a known severity: anything else is not a verdict.
func parseOutcome(body []byte) (Result, error) {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity string `json:"severity"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil {
		return Result{}, fmt.Errorf("answer is not JSON: %w", err)
	}
	if oo.ResourceType != "OperationOutcome" {
		return Result{}, fmt.Errorf("answer is a %q, not an OperationOutcome", oo.ResourceType)
	}
	if len(oo.Issue) == 0 {
		return Result{}, errors.New("answer is an OperationOutcome without issues")
	}
	errs := 0
	for i, is := range oo.Issue {
		switch is.Severity {
		case "fatal", "error":
			errs++
		case "warning", "information":
		default:
			return Result{}, fmt.Errorf("answer issue %d has severity %q", i, is.Severity)
		}
	}
	return Result{Valid: errs == 0, Errors: errs, Outcome: body}, nil
}
