package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/token"
)

// The standalone proxy refuses a client over its tier's burst as Envoy's local rate limit does: 429 with
// Retry-After and an OperationOutcome, audited with the 429, and the FHIR server never sees the request.
func TestStandaloneRefusesAClientOverItsLimitWith429(t *testing.T) {
	var upstream int
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream++
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset"}`)
	}))
	defer fhir.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sink := &fakeSink{records: make(chan audit.Record, 16)}
	core := &decision.Core{Tokens: fakeTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: sink, Log: log, Now: time.Now}
	u, _ := url.Parse(fhir.URL + "/fhir")
	g := New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, u, http.DefaultTransport, log)
	frozen := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) // no refill between requests
	g.Limiter = ratelimit.New(ratelimit.Limits{
		Tiers:     map[string]ratelimit.Rate{"standard": {PerSecond: 1, Burst: 2}},
		Anonymous: ratelimit.Rate{PerSecond: 1, Burst: 2},
	}, func() time.Time { return frozen })
	srv := httptest.NewServer(g)
	defer srv.Close()

	send := func() *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+"/patient-access/fhir/Observation?patient=member-01", nil)
		req.Header.Set("Authorization", "Bearer member-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range 2 {
		resp := send()
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, resp.StatusCode)
		}
		<-sink.records
	}
	resp := send()
	defer resp.Body.Close()
	var oo struct {
		ResourceType string
		Issue        []struct{ Code string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&oo); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || oo.ResourceType != "OperationOutcome" || oo.Issue[0].Code != "throttled" {
		t.Fatalf("over the limit: %d Retry-After=%q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), oo)
	}
	if rec := <-sink.records; rec.Status != 429 {
		t.Fatalf("audit record status %d, want 429", rec.Status)
	}
	if upstream != 2 {
		t.Fatalf("the FHIR server saw %d requests, want the 2 within the limit", upstream)
	}
}

// memberTokens verifies "member-token-<subject>" as a token of patient-app for that subject.
type memberTokens struct{}

func (memberTokens) Verify(_ context.Context, raw string) (token.Identity, error) {
	sub, ok := strings.CutPrefix(raw, "member-token-")
	if !ok {
		return token.Identity{}, token.ErrInvalid
	}
	return token.Identity{ClientID: "patient-app", Subject: sub, Patient: "member-01", Scopes: []string{"patient/*.rs"}}, nil
}

// TestMemberOverItsRateHears429EvenWhenTheProxyIsFull: with the only slot taken, a member over its own rate
// is told 429 (its doing) rather than 503, and another member of the same app, within both rates, is told
// 503 with Retry-After: capacity is checked after the decision and the rate limit, and members of one app
// have their own buckets.
func TestMemberOverItsRateHears429EvenWhenTheProxyIsFull(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	upstream := serveObservation(t, func() {
		entered <- struct{}{}
		<-release
	})
	sink := &fakeSink{records: make(chan audit.Record, 8)}
	log := slog.New(slog.DiscardHandler)
	core := &decision.Core{Tokens: memberTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: sink, Log: log, Now: time.Now}
	g := New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, upstream, http.DefaultTransport, log)
	frozen := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	g.Limiter = ratelimit.New(ratelimit.Limits{
		Tiers:     map[string]ratelimit.Rate{"standard": {PerSecond: 2, Burst: 2}},
		PerUser:   map[string]ratelimit.Rate{"standard": {PerSecond: 1, Burst: 1}},
		Anonymous: ratelimit.Rate{PerSecond: 1},
	}, func() time.Time { return frozen })
	g.LimitInFlight(1, 4)
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer close(release)
	send := func(sub string) fetched {
		req, _ := http.NewRequest("GET", srv.URL+"/patient-access/fhir/Observation?code=x", nil)
		req.Header.Set("Authorization", "Bearer member-token-"+sub)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return fetched{}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fetched{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
	}
	go send("u1")
	<-entered // u1's first request holds the only slot and its only token

	cases := []struct {
		who        string
		status     int
		retryAfter string
		reason     string
	}{
		{"u1, over its own rate", 429, "1", ""},
		{"u2, within its rate and the app's", 503, "1", "overloaded"},
	}
	for _, c := range cases {
		sub, _, _ := strings.Cut(c.who, ",")
		got := send(sub)
		if got.status != c.status || got.retryAfter != c.retryAfter || !strings.Contains(got.body, "OperationOutcome") {
			t.Fatalf("%s: %d Retry-After=%q %.200s, want %d", c.who, got.status, got.retryAfter, got.body, c.status)
		}
		rec := <-sink.records
		if rec.Status != c.status || (c.reason != "" && !slices.Contains(rec.Reasons, c.reason)) {
			t.Fatalf("%s: audit record status %d reasons %v", c.who, rec.Status, rec.Reasons)
		}
	}
}

type fetched struct {
	status     int
	retryAfter string
	body       string
}
