package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/test/tlsfixture"
)

// fakeClientAuthz stands in for fhirwall-proxy in the ADS tests: it allows every request and names the
// client (and its tier) the test put in x-test-client / x-test-tier, as fhirwall-proxy names the token's
// client after deciding.
type fakeClientAuthz struct {
	authv3.UnimplementedAuthorizationServer
	delay time.Duration // how long each decision takes
}

func (f fakeClientAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	time.Sleep(f.delay)
	h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	ok := &authv3.OkHttpResponse{}
	if c := h["x-test-client"]; c != "" {
		tier := h["x-test-tier"]
		if tier == "" {
			tier = "standard"
		}
		ok.Headers = []*corev3.HeaderValueOption{
			{Header: &corev3.HeaderValue{Key: ratelimit.ClientHeader, Value: c}},
			{Header: &corev3.HeaderValue{Key: ratelimit.TierHeader, Value: tier}},
		}
		if u := h["x-test-user"]; u != "" {
			ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: ratelimit.UserHeader, Value: u}})
		}
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}, nil
}

// adsEnvoy is a real Envoy fed over ADS by a Publisher, in front of a fake FHIR server, with fake
// ext_authz/ext_proc and a TLS listener whose certificate lives in tlsDir.
type adsEnvoy struct {
	pub      *Publisher
	cfg      Config
	base     string
	tlsDir   string
	client   *http.Client
	upstream atomic.Int64 // requests the fake FHIR server saw, and the rate-limit headers it got
	leaked   atomic.Int64
}

func startADSEnvoy(t *testing.T, rates RateLimits) *adsEnvoy {
	t.Helper()
	return startADSEnvoyWith(t, rates, 0, 0)
}

// startADSEnvoyWith is startADSEnvoy with decisions that take authzDelay and the authz cluster bounded to
// maxAuthz calls and streams (0: the default); edit, when given, changes the config before it is published.
func startADSEnvoyWith(t *testing.T, rates RateLimits, authzDelay time.Duration, maxAuthz uint32, edit ...func(*Config)) *adsEnvoy {
	t.Helper()
	bin := envoyBinary(t)
	e := &adsEnvoy{tlsDir: t.TempDir()}
	if err := tlsfixture.Generate(e.tlsDir, 1, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstream.Add(1)
		if r.Header.Get(ratelimit.ClientHeader) != "" || r.Header.Get(ratelimit.TierHeader) != "" || r.Header.Get(ratelimit.UserHeader) != "" {
			e.leaked.Add(1)
		}
		w.Header().Set("content-type", fhirJSON)
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":0}`)
	}))
	t.Cleanup(fhir.Close)

	g := grpc.NewServer()
	authv3.RegisterAuthorizationServer(g, fakeClientAuthz{delay: authzDelay})
	extprocv3.RegisterExternalProcessorServer(g, &fakeExtProc{})
	// As cmd/proxy: Envoy health-checks the authz cluster with grpc.health.v1 and sends nothing to a host that
	// does not answer SERVING.
	healthpb.RegisterHealthServer(g, health.NewServer())
	authzLis := listen(t)
	go g.Serve(authzLis)
	t.Cleanup(g.Stop)

	listenPort := freePort(t)
	e.cfg = Config{
		Listener:         Endpoint{Host: "127.0.0.1", Port: listenPort},
		ListenerTLS:      &ListenerTLS{CertFile: filepath.Join(e.tlsDir, tlsfixture.CertFile), KeyFile: filepath.Join(e.tlsDir, tlsfixture.KeyFile)},
		FHIRServer:       FHIRServer{Host: "127.0.0.1", Port: port(fhir.Listener), BasePath: "/fhir"},
		AuthzService:     Endpoint{Host: "127.0.0.1", Port: port(authzLis)},
		LocalService:     Endpoint{Host: "127.0.0.1", Port: port(authzLis)},
		PublicURL:        fmt.Sprintf("https://127.0.0.1:%d", listenPort),
		RateLimits:       rates,
		AuthzMaxRequests: maxAuthz,
		APIs: []API{
			{Name: "patient-access", PathPrefix: "/patient-access/fhir"},
			{Name: "provider-access", PathPrefix: "/provider-access/fhir"},
		},
	}

	for _, f := range edit {
		f(&e.cfg)
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, CacheLogger(log))
	e.pub = NewPublisher(snapshots, "fhirwall-test", log)
	if _, err := e.pub.Publish(ctx, e.cfg); err != nil {
		t.Fatal(err)
	}
	adsLis := listen(t)
	ads := NewGRPCServer(ctx, snapshots, log)
	go ads.Serve(adsLis)
	t.Cleanup(ads.Stop)

	bootstrap := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(bootstrap, []byte(fmt.Sprintf(adsBootstrap, port(adsLis), freePort(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	var envoyLog syncBuffer
	cmd := exec.Command(bin, "-c", bootstrap, "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &envoyLog, &envoyLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("envoy output:\n%s", envoyLog.String())
		}
	})

	pool, err := trustPool(filepath.Join(e.tlsDir, tlsfixture.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 16}
	e.client = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	e.base = fmt.Sprintf("https://127.0.0.1:%d", listenPort)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := e.client.Get(e.base + "/ready-probe")
		if err == nil {
			resp.Body.Close()
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy did not serve TLS on %d: %v\n%s", listenPort, err, envoyLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const adsBootstrap = `
node: {id: fhirwall-test, cluster: fhirwall}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
    - name: xds_cluster
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: xds_cluster
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}}]}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
`

type answer struct {
	status     int
	retryAfter string
	body       string
	err        error
}

// get sends one request as client (empty: none) and reads the whole answer.
func (e *adsEnvoy) get(path, client string) answer { return e.getAs(path, client, "") }

// getAs sends one request as user (empty: none) of client.
func (e *adsEnvoy) getAs(path, client, user string) answer {
	req, _ := http.NewRequest("GET", e.base+path, nil)
	if client != "" {
		req.Header.Set("x-test-client", client)
	}
	if user != "" {
		req.Header.Set("x-test-user", user)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, retryAfter: resp.Header.Get("retry-after"), body: string(b), err: err}
}

// TestRateLimitsArePerClientAndPerAPI: a client over its limit gets 429 with Retry-After and an
// OperationOutcome; another client on the same API and the same client on another API go on unaffected;
// the FHIR server never sees the rate-limit headers.
func TestRateLimitsArePerClientAndPerAPI(t *testing.T) {
	e := startADSEnvoy(t, RateLimits{
		Tiers:     map[string]Rate{"standard": {PerSecond: 1, Burst: 3}},
		Anonymous: Rate{PerSecond: 1, Burst: 3},
	})
	const eob = "/patient-access/fhir/ExplanationOfBenefit"
	for i := range 3 {
		if a := e.get(eob, "app-a"); a.status != 200 {
			t.Fatalf("request %d of app-a within its burst: %d %s %v", i+1, a.status, a.body, a.err)
		}
	}
	a := e.get(eob, "app-a")
	if a.status != 429 || a.retryAfter == "" || !strings.Contains(a.body, `"resourceType":"OperationOutcome"`) || !strings.Contains(a.body, `"code":"throttled"`) {
		t.Fatalf("app-a over its limit: %d retry-after=%q %s", a.status, a.retryAfter, a.body)
	}
	if b := e.get(eob, "app-b"); b.status != 200 {
		t.Fatalf("app-b on the same API was limited with app-a: %d %s", b.status, b.body)
	}
	if c := e.get("/provider-access/fhir/ExplanationOfBenefit", "app-a"); c.status != 200 {
		t.Fatalf("app-a on another API was limited: %d %s", c.status, c.body)
	}
	if n := e.leaked.Load(); n != 0 {
		t.Fatalf("the FHIR server saw the rate-limit headers on %d requests", n)
	}
}

// TestMembersOfAnAppHaveTheirOwnBucketsAndTheAppsBucketCapsThem: through a real Envoy, a member over its own
// rate is refused while another member of the same app is served, the member's refusals take nothing from
// the app's bucket, and the app's bucket caps its members together; a backend client's subjects share its
// bucket.
func TestMembersOfAnAppHaveTheirOwnBucketsAndTheAppsBucketCapsThem(t *testing.T) {
	e := startADSEnvoy(t, RateLimits{
		Tiers:     map[string]Rate{"standard": {PerSecond: 2, Burst: 6}, "backend": {PerSecond: 2, Burst: 3}},
		PerUser:   map[string]Rate{"standard": {PerSecond: 1, Burst: 2}},
		Anonymous: Rate{PerSecond: 1, Burst: 3},
	})
	const eob = "/patient-access/fhir/ExplanationOfBenefit"
	steps := []struct {
		what, user string
		want       []int
	}{
		{"member-1 within its own burst, then over it (several times)", "member-1", []int{200, 200, 429, 429, 429}},
		{"member-2 of the same app: served", "member-2", []int{200, 200}},
		{"member-3: the app's last two tokens (member-1's refusals took none)", "member-3", []int{200, 200}},
		{"member-4: its own bucket is full, the app's is empty", "member-4", []int{429}},
	}
	for _, s := range steps {
		for i, want := range s.want {
			a := e.getAs(eob, "app", s.user)
			if a.status != want {
				t.Fatalf("%s: request %d: %d, want %d (%s %v)", s.what, i+1, a.status, want, a.body, a.err)
			}
			if a.status == 429 && a.retryAfter == "" {
				t.Fatalf("%s: 429 without Retry-After", s.what)
			}
		}
	}
	for i, want := range []int{200, 200, 200, 429} {
		req, _ := http.NewRequest("GET", e.base+eob, nil)
		req.Header.Set("x-test-client", "org")
		req.Header.Set("x-test-tier", "backend")
		req.Header.Set("x-test-user", fmt.Sprintf("svc-%d", i)) // a subject per request: the backend tier has no user buckets
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("backend client, request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	if n := e.leaked.Load(); n != 0 {
		t.Fatalf("the FHIR server saw the rate-limit headers on %d requests", n)
	}
}

// TestABurstOfOneClientIsTold429NotOverflowed: 30 requests at once from a client whose bucket holds 3, with
// decisions that take 100 ms. With the authz cluster sized as fhirwall-xds sizes it now (calls for 4x
// max_in_flight being decided plus max_in_flight in flight; max_in_flight 8 here), they all reach the local
// rate limit: 3 are served and the rest told 429. Sized as before (2x), the cluster overflows and some are
// told 503 (with Retry-After, as every 503), which blames fhirwall for the client's own burst.
func TestABurstOfOneClientIsTold429NotOverflowed(t *testing.T) {
	const maxInFlight = 8
	cases := []struct {
		name     string
		maxAuthz uint32
		want503  bool
	}{
		{"sized for deciding and in flight", 4*maxInFlight + maxInFlight, false},
		{"sized as before, twice max_in_flight", 2 * maxInFlight, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := startADSEnvoyWith(t, RateLimits{
				Tiers:     map[string]Rate{"standard": {PerSecond: 1, Burst: 3}},
				Anonymous: Rate{PerSecond: 1, Burst: 3},
			}, 100*time.Millisecond, c.maxAuthz)
			answers := make([]answer, 30)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Go(func() { answers[i] = e.get("/patient-access/fhir/ExplanationOfBenefit", "app-a") })
			}
			wg.Wait()
			count := map[int]int{}
			for _, a := range answers {
				if a.err != nil {
					t.Fatal(a.err)
				}
				count[a.status]++
				if (a.status == 429 || a.status == 503) && a.retryAfter == "" {
					t.Errorf("%d without Retry-After: %s", a.status, a.body)
				}
			}
			t.Logf("30 at once: %v", count)
			if got503 := count[503] > 0; got503 != c.want503 || count[200] > 3 || count[200]+count[429]+count[503] != 30 {
				t.Fatalf("30 at once: %v; want 503s: %v, at most 3 served, nothing else", count, c.want503)
			}
		})
	}
}

// TestRateLimitChangeAppliesUnderLoadWithoutFailingARequest: while a steady load runs, a new snapshot with a
// lower limit is pushed over ADS; no request in flight fails, and the new limit is enforced afterwards.
func TestRateLimitChangeAppliesUnderLoadWithoutFailingARequest(t *testing.T) {
	e := startADSEnvoy(t, RateLimits{
		Tiers:     map[string]Rate{"standard": {PerSecond: 1000, Burst: 1000}},
		Anonymous: Rate{PerSecond: 1000, Burst: 1000},
	})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				a := e.get("/patient-access/fhir/Observation", fmt.Sprintf("load-%d", w))
				sent.Add(1)
				if a.err != nil || a.status != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %v %s", a.status, a.err, a.body))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	before := sent.Load()
	next := e.cfg
	next.RateLimits = RateLimits{
		Tiers:     map[string]Rate{"standard": {PerSecond: 1000, Burst: 1000}, "trial": {PerSecond: 1, Burst: 2}},
		Anonymous: Rate{PerSecond: 1000, Burst: 1000},
	}
	v1, _ := e.pub.Publish(context.Background(), e.cfg)
	v2, err := e.pub.Publish(context.Background(), next)
	if err != nil || v2 == v1 {
		t.Fatalf("publish: %v (version %s → %s)", err, v1, v2)
	}
	// The new tier exists only in the new snapshot: once a trial client is limited, Envoy runs it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", e.base+"/patient-access/fhir/Patient", nil)
		req.Header.Set("x-test-client", "trial-app")
		req.Header.Set("x-test-tier", "trial")
		resp, err := e.client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 429 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the trial tier's limit never took effect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	t.Logf("%d requests under load (%d after the change was pushed), %d failed", sent.Load(), sent.Load()-before, failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across the config change; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	}
	if sent.Load()-before < 20 {
		t.Fatalf("load stalled across the change: %d requests", sent.Load()-before)
	}
}

// TestListenerCertificateRotatesWithoutRestart: a new pair moved into the watched directory is served to new
// connections, with no new snapshot and no Envoy restart.
func TestListenerCertificateRotatesWithoutRestart(t *testing.T) {
	e := startADSEnvoy(t, RateLimits{})
	serial := func() (int64, error) {
		pool, err := trustPool(filepath.Join(e.tlsDir, tlsfixture.CAFile))
		if err != nil {
			return 0, err
		}
		conn, err := tls.Dial("tcp", strings.TrimPrefix(e.base, "https://"), &tls.Config{RootCAs: pool})
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	if s, err := serial(); err != nil || s != 1 {
		t.Fatalf("first certificate: serial %d, %v", s, err)
	}
	if err := tlsfixture.Generate(e.tlsDir, 2, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		s, err := serial()
		if err == nil && s == 2 {
			t.Logf("rotated certificate served after %v", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("still serving serial %d (%v) 15 s after rotation", s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func port(l net.Listener) uint32 { return uint32(l.Addr().(*net.TCPAddr).Port) }

func trustPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA certificate in " + caFile)
	}
	return pool, nil
}

// syncBuffer collects Envoy's output from two pipes at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
