// Package stackhttp sends the end-to-end suites' requests to the real stack as a well-behaved FHIR client
// would: FHIR JSON, a bearer token, and a rate limit's 429 waited out rather than reported, so that a suite
// asserts on fhirwall's answers and not on how fast it sent them.
package stackhttp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// Request is one request a suite sends.
type Request struct {
	Method, URL string
	Token       string            // bearer access token; "" sends none
	Header      map[string]string // set last: overrides Accept and Content-Type
	Body        []byte            // nil sends none
}

// Answer is what fhirwall answered to the request: the last answer when retries ran out.
type Answer struct {
	Method, URL string
	Status      int
	Body        []byte
	Header      http.Header
	DecisionID  string // X-Fhirwall-Decision-Id, the key of the decision's audit record
}

// Logger is told of every retry (a *testing.T).
type Logger interface {
	Helper()
	Logf(format string, args ...any)
}

// Client sends Requests over HTTP. An answer whose status is in RetryOn is waited out Wait apart, at most
// Retries times; the last one is returned like any other.
type Client struct {
	HTTP    *http.Client
	RetryOn []int
	Retries int
	Wait    time.Duration
}

// Send sends r, accepting FHIR JSON (and sending it when r has a body). An error means no answer came: it
// names the method and URL.
func (c Client) Send(ctx context.Context, log Logger, r Request) (Answer, error) {
	log.Helper()
	for attempt := 0; ; attempt++ {
		a, err := c.once(ctx, r)
		if err != nil {
			return Answer{}, fmt.Errorf("%s %s: %w", r.Method, r.URL, err)
		}
		if !slices.Contains(c.RetryOn, a.Status) || attempt >= c.Retries {
			return a, nil
		}
		log.Logf("%s %s → %d, retrying: %.200s", r.Method, r.URL, a.Status, a.Body)
		select {
		case <-ctx.Done():
			return Answer{}, fmt.Errorf("%s %s: %w", r.Method, r.URL, ctx.Err())
		case <-time.After(c.Wait):
		}
	}
}

func (c Client) once(ctx context.Context, r Request) (Answer, error) {
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Answer{}, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return Answer{r.Method, r.URL, resp.StatusCode, b, resp.Header, resp.Header.Get("X-Fhirwall-Decision-Id")}, nil
}
