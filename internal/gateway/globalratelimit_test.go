package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
)

// fakeRateLimitService is envoyproxy/ratelimit as the gateway sees it over gRPC: it answers code (or err,
// or after delay) and keeps every request's descriptors.
type fakeRateLimitService struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu          sync.Mutex
	code        rlsv3.RateLimitResponse_Code
	err         error
	delay       time.Duration
	descriptors [][]*commonv3.RateLimitDescriptor
}

func (f *fakeRateLimitService) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	f.mu.Lock()
	f.descriptors = append(f.descriptors, req.Descriptors)
	code, err, delay := f.code, f.err, f.delay
	f.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return &rlsv3.RateLimitResponse{OverallCode: code}, nil
}

func (f *fakeRateLimitService) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.descriptors)
}

// globalGateway is the standalone gateway with a generous local limiter and the global limit on f.
func globalGateway(t *testing.T, f *fakeRateLimitService, local ratelimit.Limits) (*httptest.Server, *fakeSink, *int) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rls := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(rls, f)
	go rls.Serve(lis)
	t.Cleanup(rls.Stop)
	global, err := ratelimit.DialGlobal(lis.Addr().String(), "fhirwall", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { global.Close() })

	upstream := new(int)
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*upstream++
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset"}`)
	}))
	t.Cleanup(fhir.Close)
	u, err := url.Parse(fhir.URL + "/fhir")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	sink := &fakeSink{records: make(chan audit.Record, 16)}
	core := &decision.Core{Tokens: fakeTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: sink, Log: log, Now: time.Now}
	g := New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, u, http.DefaultTransport, log)
	frozen := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	limiter := ratelimit.New(local, func() time.Time { return frozen })
	g.Limiter = limiter
	global.PerUser = limiter.HasUserRate // as cmd/proxy wires it
	g.Global = global
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv, sink, upstream
}

func getObservation(t *testing.T, srv *httptest.Server) fetched {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/patient-access/fhir/Observation?patient=member-01", nil)
	req.Header.Set("Authorization", "Bearer member-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fetched{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
}

var roomy = ratelimit.Limits{Tiers: map[string]ratelimit.Rate{"standard": {PerSecond: 100}}, Anonymous: ratelimit.Rate{PerSecond: 100}}

// Within the shared limit the request is served, after the service was asked with the descriptors Envoy's
// route actions produce for it: for a tier without a per-user rate, the client's alone, in one call.
func TestGlobalLimitAllowsAndAsksWithTheClientsDescriptors(t *testing.T) {
	f := &fakeRateLimitService{code: rlsv3.RateLimitResponse_OK}
	srv, sink, upstream := globalGateway(t, f, roomy)
	if got := getObservation(t, srv); got.status != 200 {
		t.Fatalf("within the limit: %d %.200s", got.status, got.body)
	}
	<-sink.records
	if *upstream != 1 || f.calls() != 1 {
		t.Fatalf("upstream %d, service asked %d times", *upstream, f.calls())
	}
	want := ratelimit.Descriptors("patient-access", "patient-app", "standard", "")
	assertDescriptors(t, f.descriptors[0], want)
}

// With a per-user tier the user's counter is asked first, in a call of its own (the subject only as its
// digest), then the app's; a user over its own rate is refused without the app's counter being touched, so
// one member far over its rate cannot use up the app's for the others.
func TestGlobalLimitAsksTheUsersCounterFirstAndAloneThenTheApps(t *testing.T) {
	perUser := ratelimit.Limits{Tiers: map[string]ratelimit.Rate{"standard": {PerSecond: 100}}, Anonymous: ratelimit.Rate{PerSecond: 100},
		PerUser: map[string]ratelimit.Rate{"standard": {PerSecond: 50}}}
	f := &fakeRateLimitService{code: rlsv3.RateLimitResponse_OK}
	srv, sink, _ := globalGateway(t, f, perUser)
	if got := getObservation(t, srv); got.status != 200 {
		t.Fatalf("within the limits: %d %.200s", got.status, got.body)
	}
	<-sink.records
	if f.calls() != 2 {
		t.Fatalf("service asked %d times, want twice (user, then app)", f.calls())
	}
	all := ratelimit.Descriptors("patient-access", "patient-app", "standard", "u1")
	assertDescriptors(t, f.descriptors[0], all[1:])
	assertDescriptors(t, f.descriptors[1], all[:1])
	if f.descriptors[0][0].Entries[3].Value != ratelimit.UserKey("u1") {
		t.Fatalf("user entry %q, want the subject's digest", f.descriptors[0][0].Entries[3].Value)
	}

	f.mu.Lock()
	f.code = rlsv3.RateLimitResponse_OVER_LIMIT
	f.mu.Unlock()
	if got := getObservation(t, srv); got.status != 429 {
		t.Fatalf("user over its rate: %d", got.status)
	}
	<-sink.records
	if f.calls() != 3 {
		t.Fatalf("service asked %d times in all, want 3: a user refused by its own counter must not reach the app's", f.calls())
	}
}

func assertDescriptors(t *testing.T, got, want []*commonv3.RateLimitDescriptor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("descriptors %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i].Entries) != len(want[i].Entries) {
			t.Fatalf("descriptor %d: %v, want %v", i, got[i], want[i])
		}
		for j, e := range want[i].Entries {
			if got[i].Entries[j].Key != e.Key || got[i].Entries[j].Value != e.Value {
				t.Fatalf("descriptor %d entry %d: %v, want %v", i, j, got[i].Entries[j], e)
			}
		}
	}
}

// Over the shared limit: the same 429 the local limiter gives (OperationOutcome, Retry-After), audited with
// 429, and the FHIR server never sees the request.
func TestGlobalLimitOverLimitAnswers429LikeTheLocalLimit(t *testing.T) {
	f := &fakeRateLimitService{code: rlsv3.RateLimitResponse_OVER_LIMIT}
	srv, sink, upstream := globalGateway(t, f, roomy)
	got := getObservation(t, srv)
	if got.status != 429 || got.retryAfter != "1" || !strings.Contains(got.body, `"code":"throttled"`) || !strings.Contains(got.body, "OperationOutcome") {
		t.Fatalf("over the global limit: %d Retry-After=%q %.200s", got.status, got.retryAfter, got.body)
	}
	if rec := <-sink.records; rec.Status != 429 {
		t.Fatalf("audit record status %d, want 429", rec.Status)
	}
	if *upstream != 0 {
		t.Fatalf("the FHIR server saw %d requests", *upstream)
	}
}

// The service failing, or slower than its timeout, refuses the request (fail closed): 503 with Retry-After,
// the same OperationOutcome Envoy's local reply mapping gives, audited with the reason.
func TestGlobalLimitServiceDownAnswers503(t *testing.T) {
	for _, c := range []struct {
		name string
		fake *fakeRateLimitService
	}{
		{"service error", &fakeRateLimitService{err: status.Error(codes.Unavailable, "redis down")}},
		{"slower than the timeout", &fakeRateLimitService{code: rlsv3.RateLimitResponse_OK, delay: 2 * time.Second}},
		{"unknown answer", &fakeRateLimitService{code: rlsv3.RateLimitResponse_UNKNOWN}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, sink, upstream := globalGateway(t, c.fake, roomy)
			started := time.Now()
			got := getObservation(t, srv)
			if got.status != 503 || got.retryAfter == "" || !strings.Contains(got.body, ratelimit.UnavailableDiagnostics) {
				t.Fatalf("%d Retry-After=%q %.300s", got.status, got.retryAfter, got.body)
			}
			if took := time.Since(started); took > time.Second {
				t.Fatalf("took %s: the timeout did not bound the wait", took)
			}
			rec := <-sink.records
			if rec.Status != 503 || !slices.Contains(rec.Reasons, "rate_limiter_unavailable") {
				t.Fatalf("audit record status %d reasons %v", rec.Status, rec.Reasons)
			}
			if *upstream != 0 {
				t.Fatalf("the FHIR server saw %d requests", *upstream)
			}
		})
	}
}

// The local limit is the first line: a request it refuses never reaches the service.
func TestLocalLimitRefusesBeforeTheGlobalIsAsked(t *testing.T) {
	f := &fakeRateLimitService{code: rlsv3.RateLimitResponse_OK}
	srv, sink, _ := globalGateway(t, f, ratelimit.Limits{Tiers: map[string]ratelimit.Rate{"standard": {PerSecond: 1}}, Anonymous: ratelimit.Rate{PerSecond: 1}})
	if got := getObservation(t, srv); got.status != 200 {
		t.Fatalf("first: %d", got.status)
	}
	<-sink.records
	if got := getObservation(t, srv); got.status != 429 {
		t.Fatalf("second, over the local limit: %d", got.status)
	}
	<-sink.records
	if n := f.calls(); n != 1 {
		t.Fatalf("service asked %d times, want once (the local limit refused the second)", n)
	}
}
