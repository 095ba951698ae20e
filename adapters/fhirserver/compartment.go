// Package fhirserver asks the FHIR server the questions fhirwall needs answered before it can decide,
// through a circuit breaker so a struggling server is not hammered and requests fail fast and closed.
package fhirserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sony/gobreaker/v2"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/policy"
)

var _ decision.CompartmentChecker = (*Client)(nil)

// Client talks to the FHIR server's base URL.
type Client struct {
	base    string
	http    *http.Client
	breaker *gobreaker.CircuitBreaker[bool]
}

// New returns a client for base (e.g. http://127.0.0.1:8090/fhir); hc is Upstream.Lookups.
func New(base string, hc *http.Client) *Client {
	return &Client{
		base:    strings.TrimSuffix(base, "/"),
		http:    hc,
		breaker: newBreaker[bool]("fhir-server"),
	}
}

// Breaker is a circuit breaker's name and state, for metrics.
type Breaker interface {
	Name() string
	State() gobreaker.State
}

// Breaker returns the client's circuit breaker.
func (c *Client) Breaker() Breaker { return c.breaker }

// StatusError is an answer of the FHIR server other than the one asked for; metrics classify it by status.
type StatusError struct{ Status int }

func (e *StatusError) Error() string   { return fmt.Sprintf("answered %d", e.Status) }
func (e *StatusError) StatusCode() int { return e.Status }

// Matches reports whether resourceType/id exists and matches every narrowing parameter, by searching
// [type]?_id=id&param=value...&_summary=count: the FHIR server's own search semantics decide membership.
func (c *Client) Matches(ctx context.Context, resourceType, id string, narrow []policy.Narrow) (bool, error) {
	return call(ctx, c.breaker, func() (bool, error) {
		q := url.Values{}
		for _, n := range narrow {
			q.Set(n.Param, n.Value)
		}
		q.Set("_id", id) // after the narrowing: the resource asked for, and only it
		q.Set("_summary", "count")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/"+url.PathEscape(resourceType)+"?"+q.Encode(), nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("Accept", "application/fhir+json")
		req.Header.Set("Cache-Control", "no-cache")
		resp, err := c.http.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			return false, fmt.Errorf("fhir server: %s: %w", resourceType, &StatusError{Status: resp.StatusCode})
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Total        *int   `json:"total"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&b); err != nil {
			return false, fmt.Errorf("fhir server: %w", err)
		}
		if b.ResourceType != "Bundle" || b.Total == nil {
			return false, errors.New("fhir server: count search did not return a Bundle with total")
		}
		return *b.Total == 1, nil
	})
}
