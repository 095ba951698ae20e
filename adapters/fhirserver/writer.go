package fhirserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sony/gobreaker/v2"
)

// Reply is one whole answer of the FHIR server to an Exchanger.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// maxReplyBytes bounds one answer an adapter reads (a Group of 10,000 members is about 1 MiB).
const maxReplyBytes = 64 << 20

// Exchanger makes the FHIR requests adapters make on their own behalf (create a Consent, a Group; start an
// export), through a circuit breaker. A 5xx answer or a broken exchange is the server's failure; any other
// answer is returned for the caller to judge (a 4xx is about the request, not the server).
type Exchanger struct {
	base    string
	http    *http.Client
	breaker *gobreaker.CircuitBreaker[*Reply]
}

// NewExchanger returns an Exchanger for the FHIR base URL; hc is Upstream.Refreshes (the server's timeout).
func NewExchanger(name, base string, hc *http.Client) *Exchanger {
	return &Exchanger{base: strings.TrimSuffix(base, "/"), http: hc, breaker: newBreaker[*Reply](name)}
}

// Base is the FHIR base URL, without a trailing slash.
func (x *Exchanger) Base() string { return x.base }

// Breaker returns the exchanger's circuit breaker.
func (x *Exchanger) Breaker() Breaker { return x.breaker }

// Do sends method base/path?query with a FHIR JSON body (nil: none) and extra headers.
func (x *Exchanger) Do(ctx context.Context, method, path string, query url.Values, header http.Header, body []byte) (*Reply, error) {
	u := x.base + "/" + strings.TrimPrefix(path, "/")
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return call(ctx, x.breaker, func() (*Reply, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/fhir+json")
		if body != nil {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		for k, vs := range header {
			req.Header[k] = vs
		}
		resp, err := x.http.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
		if err != nil {
			return nil, fmt.Errorf("fhir server: %s %s: %w", method, path, err)
		}
		if len(b) > maxReplyBytes {
			return nil, fmt.Errorf("fhir server: %s %s: answer over %d bytes", method, path, maxReplyBytes)
		}
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("fhir server: %s %s: %w", method, path, &StatusError{Status: resp.StatusCode})
		}
		return &Reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
	})
}
