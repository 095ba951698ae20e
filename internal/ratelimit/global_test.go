package ratelimit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fakeRateLimitService answers ShouldRateLimit with answer (or err, or after delay) and keeps the requests.
type fakeRateLimitService struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu       sync.Mutex
	requests []*rlsv3.RateLimitRequest
	answer   *rlsv3.RateLimitResponse
	err      error
	delay    time.Duration
}

func (f *fakeRateLimitService) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	answer, err, delay := f.answer, f.err, f.delay
	f.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return answer, err
}

func startFake(t *testing.T, f *fakeRateLimitService) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func flatten(req *rlsv3.RateLimitRequest) string {
	var ds []string
	for _, d := range req.Descriptors {
		var es []string
		for _, e := range d.Entries {
			es = append(es, e.Key+"="+e.Value)
		}
		ds = append(ds, strings.Join(es, ","))
	}
	return strings.Join(ds, " | ")
}

func TestGlobalCheckAsksWithTheRequestsDescriptors(t *testing.T) {
	f := &fakeRateLimitService{answer: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}}
	g, err := DialGlobal(startFake(t, f), "fhirwall", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, c := range []struct{ api, client, tier, sub, want string }{
		// With a subject, two calls: the user's counter, then the app's (the last request, checked here);
		// TestGlobalCheckAsksTheUsersCounterFirst checks the first.
		{"patient-access", "app1", "standard", "member-1", "fhirwall_api=patient-access,fhirwall_tier=standard,fhirwall_client=app1"},
		{"patient-access", "app1", "", "", "fhirwall_api=patient-access,fhirwall_tier=standard,fhirwall_client=app1"},
		{"provider-access", "", "", "someone", "fhirwall_api=provider-access,fhirwall_anonymous=true"},
	} {
		ok, _, err := g.Check(context.Background(), c.api, c.client, c.tier, c.sub)
		if !ok || err != nil {
			t.Fatalf("%+v: ok %v err %v", c, ok, err)
		}
		f.mu.Lock()
		req := f.requests[len(f.requests)-1]
		f.mu.Unlock()
		if req.Domain != "fhirwall" || req.HitsAddend != 1 || flatten(req) != c.want {
			t.Fatalf("%+v: domain %q hits %d descriptors\n  %s\nwant\n  %s", c, req.Domain, req.HitsAddend, flatten(req), c.want)
		}
		if strings.Contains(flatten(req), "member-1") {
			t.Fatal("the subject itself went to the rate limit service")
		}
	}
}

func TestGlobalCheckAsksTheUsersCounterFirst(t *testing.T) {
	f := &fakeRateLimitService{answer: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}}
	g, err := DialGlobal(startFake(t, f), "fhirwall", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ok, _, err := g.Check(context.Background(), "patient-access", "app1", "standard", "member-1")
	if ok || err != nil {
		t.Fatalf("over the user's limit: ok %v err %v", ok, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := "fhirwall_api=patient-access,fhirwall_tier=standard,fhirwall_client=app1,fhirwall_user=" + UserKey("member-1")
	if len(f.requests) != 1 || flatten(f.requests[0]) != want {
		t.Fatalf("%d calls, the first %s; want one call with the user's counter alone: %s", len(f.requests), flatten(f.requests[0]), want)
	}
	// A tier without a per-user rate: the user's counter is not asked about.
	g.PerUser = func(api, tier string) bool { return false }
	f.requests = nil
	f.mu.Unlock()
	_, _, _ = g.Check(context.Background(), "patient-access", "app1", "standard", "member-1")
	f.mu.Lock()
	if len(f.requests) != 1 || strings.Contains(flatten(f.requests[0]), "fhirwall_user") {
		t.Fatalf("without a per-user rate: %d calls, %v", len(f.requests), f.requests)
	}
}

func TestGlobalCheckAnswers(t *testing.T) {
	over := func(reset time.Duration) *rlsv3.RateLimitResponse {
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK},
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, DurationUntilReset: durationpb.New(reset)},
		}}
	}
	for _, c := range []struct {
		name    string
		fake    *fakeRateLimitService
		ok      bool
		wait    time.Duration
		failure bool
	}{
		{"ok", &fakeRateLimitService{answer: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}}, true, 0, false},
		{"over, reset in 300ms: retry after 1s", &fakeRateLimitService{answer: over(300 * time.Millisecond)}, false, time.Second, false},
		{"over, reset in 61.2s: rounded up", &fakeRateLimitService{answer: over(61200 * time.Millisecond)}, false, 62 * time.Second, false},
		{"over without reset", &fakeRateLimitService{answer: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}}, false, time.Second, false},
		{"unknown answer", &fakeRateLimitService{answer: &rlsv3.RateLimitResponse{}}, false, 0, true},
		{"service error (Redis down)", &fakeRateLimitService{err: status.Error(codes.Unknown, "redis: connection refused")}, false, 0, true},
		{"slower than the timeout", &fakeRateLimitService{answer: &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, delay: time.Second}, false, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := DialGlobal(startFake(t, c.fake), "fhirwall", 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			started := time.Now()
			ok, wait, err := g.Check(context.Background(), "patient-access", "app1", "standard", "")
			if ok != c.ok || wait != c.wait || (err != nil) != c.failure || (err != nil && !errors.Is(err, ErrUnavailable)) {
				t.Fatalf("ok %v wait %s err %v; want ok %v wait %s failure %v", ok, wait, err, c.ok, c.wait, c.failure)
			}
			if took := time.Since(started); took > 900*time.Millisecond {
				t.Fatalf("took %s: the timeout did not bound the call", took)
			}
		})
	}
}

func TestGlobalCheckNothingListening(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	g, err := DialGlobal(addr, "fhirwall", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if ok, _, err := g.Check(context.Background(), "patient-access", "app1", "standard", ""); ok || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no service: ok %v err %v, want refused with ErrUnavailable", ok, err)
	}
}

func TestDialGlobalRefusesAnIncompleteSetting(t *testing.T) {
	for _, c := range []struct {
		addr, domain string
		timeout      time.Duration
	}{{"", "fhirwall", time.Second}, {"127.0.0.1:1", "", time.Second}, {"127.0.0.1:1", "fhirwall", 0}} {
		if _, err := DialGlobal(c.addr, c.domain, c.timeout); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// FuzzGlobalVerdict: whatever the service's answer decodes to, only OK allows, a refusal carries a
// Retry-After of whole seconds from 1 s to an hour, and anything but OK or OVER_LIMIT is an error.
func FuzzGlobalVerdict(f *testing.F) {
	for _, r := range []*rlsv3.RateLimitResponse{
		{OverallCode: rlsv3.RateLimitResponse_OK},
		{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, DurationUntilReset: durationpb.New(1500 * time.Millisecond)}}},
		{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, DurationUntilReset: &durationpb.Duration{Seconds: -5}}}},
		{},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp rlsv3.RateLimitResponse
		if proto.Unmarshal(b, &resp) != nil {
			return
		}
		ok, wait, err := verdict(&resp)
		switch resp.GetOverallCode() {
		case rlsv3.RateLimitResponse_OK:
			if !ok || wait != 0 || err != nil {
				t.Fatalf("OK: %v %v %v", ok, wait, err)
			}
		case rlsv3.RateLimitResponse_OVER_LIMIT:
			if ok || err != nil || wait < time.Second || wait > maxRetryAfter || wait%time.Second != 0 {
				t.Fatalf("OVER_LIMIT: %v %v %v", ok, wait, err)
			}
		default:
			if ok || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v: %v %v %v", resp.GetOverallCode(), ok, wait, err)
			}
		}
	})
}
