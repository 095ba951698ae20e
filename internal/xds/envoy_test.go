package xds

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/tlsfixture"
)

// envoyBinary finds Envoy: $FHIRWALL_ENVOY_BIN, else what test/stack/envoy.sh installed.
func envoyBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("FHIRWALL_ENVOY_BIN"); b != "" {
		return b
	}
	out, err := exec.Command("bash", filepath.Join("..", "..", "test", "stack", "envoy.sh"), "bin").Output()
	if err != nil {
		require.Missing(t, "envoy not installed: run `bash test/stack/envoy.sh install` (make test does) or set FHIRWALL_ENVOY_BIN")
	}
	return strings.TrimSpace(string(out))
}

// staticBootstrap puts the resources into a bootstrap Envoy can load from a file: the route configuration
// is inlined where the listener would fetch it over RDS.
func staticBootstrap(t *testing.T, res *Resources) []byte {
	t.Helper()
	routes := map[string]*routev3.RouteConfiguration{}
	for _, r := range res.Routes {
		rc := r.(*routev3.RouteConfiguration)
		routes[rc.GetName()] = rc
	}
	b := &bootstrapv3.Bootstrap{
		Node:            &corev3.Node{Id: "fhirwall-test", Cluster: "fhirwall"},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{},
	}
	for _, r := range res.Listeners {
		l := proto.Clone(r).(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				rc, ok := routes[hcm.GetRds().GetRouteConfigName()]
				if !ok {
					t.Fatalf("listener %s names unknown route config %q", l.GetName(), hcm.GetRds().GetRouteConfigName())
				}
				hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
			}
		}
		b.StaticResources.Listeners = append(b.StaticResources.Listeners, l)
	}
	for _, c := range res.Clusters {
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, c.(*clusterv3.Cluster))
	}
	// Secrets become static ones: an SDS reference without a config source names a static secret.
	for _, s := range res.Secrets {
		b.StaticResources.Secrets = append(b.StaticResources.Secrets, s.(*tlsv3.Secret))
	}
	for _, l := range b.StaticResources.Listeners {
		for _, fc := range l.GetFilterChains() {
			if ts := fc.GetTransportSocket(); ts != nil {
				ctx := &tlsv3.DownstreamTlsContext{}
				if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
					t.Fatal(err)
				}
				for _, sds := range ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
					sds.SdsConfig = nil
				}
				ts.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}
			}
		}
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEnvoyAcceptsGeneratedConfig runs `envoy --mode validate` on every golden input: the protos' own
// validation does not know which extensions Envoy 1.40 ships or how it cross-checks fields.
func TestEnvoyAcceptsGeneratedConfig(t *testing.T) {
	bin := envoyBinary(t)
	for name, cfg := range goldenInputs(t) {
		t.Run(name, func(t *testing.T) {
			withRealTLSFiles(t, &cfg)
			path := filepath.Join(t.TempDir(), "bootstrap.json")
			if err := os.WriteFile(path, staticBootstrap(t, buildResources(t, cfg)), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "--mode", "validate", "-c", path, "--log-level", "warn").CombinedOutput()
			if err != nil {
				t.Fatalf("envoy rejects the generated config: %v\n%s", err, out)
			}
		})
	}
}

// withRealTLSFiles points the config's certificate paths at files a test CA just wrote: Envoy reads them
// even when it only validates.
func withRealTLSFiles(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.ListenerTLS == nil && cfg.FHIRServer.TLS == nil {
		return
	}
	dir := t.TempDir()
	if err := tlsfixture.Generate(dir, 1, "127.0.0.1", "localhost"); err != nil {
		t.Fatal(err)
	}
	if cfg.ListenerTLS != nil {
		tls := *cfg.ListenerTLS
		tls.CertFile, tls.KeyFile = filepath.Join(dir, tlsfixture.CertFile), filepath.Join(dir, tlsfixture.KeyFile)
		if tls.ClientCAFile != "" {
			tls.ClientCAFile = filepath.Join(dir, tlsfixture.CAFile)
		}
		cfg.ListenerTLS = &tls
	}
	if cfg.FHIRServer.TLS != nil {
		up := *cfg.FHIRServer.TLS
		up.CAFile = filepath.Join(dir, tlsfixture.CAFile)
		cfg.FHIRServer.TLS = &up
	}
}

// fakeAuthz stands in for fhirwall-proxy's ext_authz service in this test of the generated Envoy config.
// It decides by path: .../deny → 403, .../deny-503 → 503 denial, .../error-response → error_response with
// its own body, anything else → allow and tell the FHIR server the patient.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	checks []*authv3.CheckRequest
}

const fakeDenialBody = `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden","diagnostics":"from fhirwall-proxy"}]}`

func (f *fakeAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.checks = append(f.checks, req)
	f.mu.Unlock()
	fhirHeaders := []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-type", Value: fhirJSON}}}
	denied := func(status int) *authv3.DeniedHttpResponse {
		return &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(status)}, Headers: fhirHeaders, Body: fakeDenialBody}
	}
	path := req.GetAttributes().GetRequest().GetHttp().GetPath()
	switch {
	case strings.HasSuffix(path, "/deny"):
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied(403)}}, nil
	case strings.HasSuffix(path, "/deny-503"):
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied(503)}}, nil
	case strings.HasSuffix(path, "/error-response"):
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unavailable)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: denied(503)}}, nil
	}
	// As fhirwall-proxy does, the allowed decision travels to ext_proc in ext_authz's dynamic metadata.
	meta, _ := structpb.NewStruct(map[string]any{"sealed": "sealed:" + path})
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "x-fhirwall-patient", Value: "member-01"},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}},
		DynamicMetadata: meta}, nil
}

// fakeExtProc stands in for fhirwall-proxy's ext_proc service. It marks the responses it saw, so the test can
// tell ext_proc is on the path, and decides by path like fakeAuthz: .../enforce asks for the body (mode_override
// BUFFERED) and replaces it, .../enforce-404 refuses it with an immediate 404, .../enforce-big asks for a body
// larger than Envoy's buffer limit; anything else is headers only (mode_override back from the static BUFFERED).
type fakeExtProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	mu     sync.Mutex
	bodies []int // sizes of the response bodies it was sent
	// sealed: per request path, the "sealed" field of ext_authz's metadata as each message brought it
	// ("request_headers", "response_headers", "request_body").
	sealed map[string]map[string]string
	// headers: the name of every header any message brought.
	headers map[string]bool
}

func (f *fakeExtProc) noteHeaders(h *extprocv3.HttpHeaders) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.headers == nil {
		f.headers = map[string]bool{}
	}
	for _, v := range h.GetHeaders().GetHeaders() {
		f.headers[v.GetKey()] = true
	}
}

// sawHeaders are the names of the headers ext_proc was sent, sorted.
func (f *fakeExtProc) sawHeaders() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.headers))
}

// sawSealed is what ext_authz's metadata held, as ext_proc's message of kind for path brought it.
func (f *fakeExtProc) sawSealed(path, kind string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sealed[path][kind]
}

func (f *fakeExtProc) noteSealed(path, kind string, req *extprocv3.ProcessingRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sealed == nil {
		f.sealed = map[string]map[string]string{}
	}
	if f.sealed[path] == nil {
		f.sealed[path] = map[string]string{}
	}
	f.sealed[path][kind] = req.GetMetadataContext().GetFilterMetadata()[extAuthzFilterName].GetFields()["sealed"].GetStringValue()
}

const fakeEnforcedBody = `{"resourceType":"Bundle","type":"searchset","total":0}`

func (f *fakeExtProc) sawBodies() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.bodies...)
}

func (f *fakeExtProc) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	var path string
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		var resp *extprocv3.ProcessingResponse
		switch m := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			// As fhirwall-proxy, it knows the request by the decision that came sealed with it: Envoy forwards
			// it no :path (forward_rules).
			path = strings.TrimPrefix(req.GetMetadataContext().GetFilterMetadata()[extAuthzFilterName].GetFields()["sealed"].GetStringValue(), "sealed:")
			f.noteHeaders(m.RequestHeaders)
			f.noteSealed(path, "request_headers", req)
			mode := extProcMode(ext_procv3.ProcessingMode_NONE)
			if strings.Contains(path, "/enforce") {
				mode = extProcMode(ext_procv3.ProcessingMode_BUFFERED)
			}
			if strings.Contains(path, "$adapter-") {
				// As fhirwall-proxy for an adapter that answers on the request body: the body, whole, next.
				mode = extProcOverrideModes()[2]
			}
			resp = &extprocv3.ProcessingResponse{
				Response:     &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
				ModeOverride: mode,
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			f.noteSealed(path, "request_body", req)
			if !m.RequestBody.GetEndOfStream() {
				return fmt.Errorf("fake ext_proc: a BUFFERED request body came in parts")
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_OK},
				Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte(fhirJSON)}}}},
				Body:    append([]byte("adapter:"), m.RequestBody.GetBody()...),
				Details: extProcRefusalDetail,
			}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			f.noteHeaders(m.ResponseHeaders)
			f.noteSealed(path, "response_headers", req)
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
				Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
					SetHeaders:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-fake-extproc", RawValue: []byte("seen")}}},
					RemoveHeaders: []string{"content-length"},
				}}}}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			f.mu.Lock()
			f.bodies = append(f.bodies, len(m.ResponseBody.GetBody()))
			f.mu.Unlock()
			switch {
			case !strings.Contains(path, "/enforce"):
				// A local reply (ext_authz denial): its body passes.
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
			case strings.HasSuffix(path, "/enforce-404"):
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_NotFound},
					Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
						{Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte(fhirJSON)}},
						{Header: &corev3.HeaderValue{Key: "x-fhirwall-decision-id", RawValue: []byte("d-404")}},
					}},
					Body:    []byte(fakeDenialBody),
					Details: extProcRefusalDetail,
				}}}
			case strings.HasSuffix(path, "/enforce-large"):
				// Send the large body back whole: gRPC messages of several MiB both ways.
				body := m.ResponseBody.GetBody()
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
					Response: &extprocv3.CommonResponse{
						HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
							Header:       &corev3.HeaderValue{Key: "content-length", RawValue: []byte(fmt.Sprint(len(body)))},
							AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
						}}},
						BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}},
					},
				}}}
			default:
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
					Response: &extprocv3.CommonResponse{
						HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
							Header:       &corev3.HeaderValue{Key: "content-length", RawValue: []byte(fmt.Sprint(len(fakeEnforcedBody)))},
							AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
						}}},
						BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(fakeEnforcedBody)}},
					},
				}}}
			}
		default:
			return fmt.Errorf("fake ext_proc: unexpected %T", req.Request)
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

func (f *fakeAuthz) last() *authv3.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.checks) == 0 {
		return nil
	}
	return f.checks[len(f.checks)-1]
}

func (f *fakeAuthz) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.checks)
}

type upstreamHit struct {
	path    string
	patient string
	// forwarded holds the headers the FHIR server could build its links from, as "name: value" lines.
	forwarded string
}

// linkHeaders are the request headers HAPI and Spring read a public base from.
var linkHeaders = []string{"Host", "Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Ssl"}

func forwardedHeaders(r *http.Request) string {
	var b strings.Builder
	for _, h := range linkHeaders {
		v := r.Header.Values(h)
		if h == "Host" {
			v = []string{r.Host}
		}
		if len(v) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", h, strings.Join(v, ", "))
		}
	}
	return b.String()
}

// freePort is a port free now for Envoy to listen on. It is picked below Linux's ephemeral range (32768 and
// up): a port the kernel handed out as ephemeral could be taken again, between this check and Envoy's bind,
// by one of the many outgoing connections Envoy and the test servers open ("Address already in use").
func freePort(t *testing.T) uint32 {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return uint32(p)
	}
	t.Fatal("no free port between 20000 and 32000")
	return 0
}

// TestEnvoyWithGeneratedConfig runs the real Envoy on the generated config between a fake FHIR server and
// fakeAuthz, and checks what a client and the FHIR server see.
func TestEnvoyWithGeneratedConfig(t *testing.T) {
	bin := envoyBinary(t)

	var mu sync.Mutex
	var hits []upstreamHit
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, upstreamHit{path: r.URL.RequestURI(), patient: strings.Join(r.Header.Values("x-fhirwall-patient"), ","), forwarded: forwardedHeaders(r)})
		mu.Unlock()
		w.Header().Set("content-type", fhirJSON)
		if strings.HasSuffix(r.URL.Path, "/enforce-large") {
			io.WriteString(w, `{"resourceType":"Bundle","padding":"`+strings.Repeat("y", responseBufferLimitBytes/2)+`"}`)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/enforce-big") {
			// One byte over the buffer limit, sent with a content-length like HAPI does for a large Bundle.
			big := bytes.Repeat([]byte("x"), responseBufferLimitBytes+1)
			w.Header().Set("content-length", fmt.Sprint(len(big)))
			w.Write(big)
			return
		}
		io.WriteString(w, `{"resourceType":"CapabilityStatement"}`)
	}))
	defer fhir.Close()
	upstreamHits := func() []upstreamHit { mu.Lock(); defer mu.Unlock(); return append([]upstreamHit(nil), hits...) }

	// local stands in for fhirwall-proxy's proxy.local listener (internal/capability).
	var localHits []upstreamHit
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		localHits = append(localHits, upstreamHit{path: r.URL.RequestURI(), patient: r.Header.Get("authorization")})
		mu.Unlock()
		w.Header().Set("content-type", "application/json")
		io.WriteString(w, `{"from":"fhirwall-local"}`)
	}))
	defer local.Close()
	localRequests := func() []upstreamHit { mu.Lock(); defer mu.Unlock(); return append([]upstreamHit(nil), localHits...) }

	authz := &fakeAuthz{}
	authzLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(2 * responseBufferLimitBytes)) // as cmd/proxy: BUFFERED bodies are large
	authv3.RegisterAuthorizationServer(g, authz)
	extproc := &fakeExtProc{}
	extprocv3.RegisterExternalProcessorServer(g, extproc)
	// As cmd/proxy: Envoy health-checks the authz cluster with grpc.health.v1 and sends nothing to a host that
	// does not answer SERVING.
	healthpb.RegisterHealthServer(g, health.NewServer())
	go g.Serve(authzLis)
	defer g.Stop()

	fhirPort := uint32(fhir.Listener.Addr().(*net.TCPAddr).Port)
	listenPort := freePort(t)
	cfg := Config{
		Listener:     Endpoint{Host: "127.0.0.1", Port: listenPort},
		FHIRServer:   FHIRServer{Host: "127.0.0.1", Port: fhirPort, BasePath: "/fhir"},
		AuthzService: Endpoint{Host: "127.0.0.1", Port: uint32(authzLis.Addr().(*net.TCPAddr).Port)},
		LocalService: Endpoint{Host: "127.0.0.1", Port: uint32(local.Listener.Addr().(*net.TCPAddr).Port)},
		PublicURL:    "https://fhir.payer.example/gw",
		APIs:         []API{{Name: "patient-access", PathPrefix: "/patient-access/fhir", CORSOrigins: []string{"https://app.example"}}},
	}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, staticBootstrap(t, buildResources(t, cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	var envoyLog bytes.Buffer
	cmd := exec.Command(bin, "-c", path, "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &envoyLog, &envoyLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("envoy output (access log included):\n%s", envoyLog.String())
		}
	}()

	base := fmt.Sprintf("http://127.0.0.1:%d", listenPort)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(base + "/ready-probe")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy did not listen on %d: %v\n%s", listenPort, err, envoyLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	type result struct {
		status      int
		contentType string
		body        string
	}
	do := func(t *testing.T, method, path string, body io.Reader, header http.Header) result {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return result{resp.StatusCode, resp.Header.Get("content-type"), string(b)}
	}
	wantOutcome := func(t *testing.T, r result, status int, issueCode string) {
		t.Helper()
		if r.status != status || r.contentType != fhirJSON ||
			!strings.Contains(r.body, `"resourceType":"OperationOutcome"`) || !strings.Contains(r.body, `"code":"`+issueCode+`"`) {
			t.Fatalf("want %d OperationOutcome %q as %s, got %d %s %s", status, issueCode, fhirJSON, r.status, r.contentType, r.body)
		}
	}

	t.Run("allowed request reaches the FHIR server rewritten, with only the patient ext_authz set", func(t *testing.T) {
		r := do(t, "GET", "/patient-access/fhir/Patient/member-01?_elements=id", nil, http.Header{
			"X-Fhirwall-Patient": {"member-99"}, "X-FHIRWALL-Decision-Id": {"forged"},
		})
		if r.status != 200 {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		h := upstreamHits()
		if got := h[len(h)-1]; got.path != "/fhir/Patient/member-01?_elements=id" || got.patient != "member-01" {
			t.Fatalf("FHIR server saw %+v", got)
		}
		for k := range authz.last().GetAttributes().GetRequest().GetHttp().GetHeaders() {
			if strings.HasPrefix(k, "x-fhirwall-") {
				t.Fatalf("client-supplied %s reached ext_authz", k)
			}
		}
	})
	t.Run("the FHIR server's link headers come from public_url, whatever Host and Forwarded the client sent", func(t *testing.T) {
		for _, h := range []http.Header{
			{"Host": {"evil.example"}},
			{"Forwarded": {"host=evil.example;proto=http"}},
			{"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Prefix": {"//evil.example"},
				"X-Forwarded-Port": {"8443"}, "X-Forwarded-Ssl": {"off"}},
		} {
			req, _ := http.NewRequest("GET", base+"/patient-access/fhir/Patient/member-01", nil)
			for k, v := range h {
				req.Header[k] = v
			}
			if host := h.Get("Host"); host != "" {
				req.Host = host
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%v: %d", h, resp.StatusCode)
			}
			hits := upstreamHits()
			got := hits[len(hits)-1].forwarded
			// Host is the client's (the FHIR server replaces it with x-forwarded-host); nothing else is.
			hostLine := fmt.Sprintf("Host: 127.0.0.1:%d\n", listenPort)
			if v := h.Get("Host"); v != "" {
				hostLine = "Host: " + v + "\n"
			}
			want := hostLine + "X-Forwarded-Host: fhir.payer.example\nX-Forwarded-Proto: https\nX-Forwarded-Prefix: /gw/patient-access/fhir\n"
			if got != want {
				t.Errorf("client sent %v; the FHIR server saw\n%s\nwant\n%s", h, got, want)
			}
		}
	})
	t.Run("metadata and smart-configuration are answered by fhirwall-proxy, decided and seen by ext_proc", func(t *testing.T) {
		for _, p := range []string{"/patient-access/fhir/metadata", "/patient-access/fhir/.well-known/smart-configuration"} {
			fhirBefore, localBefore, checksBefore := len(upstreamHits()), len(localRequests()), authz.count()
			req, _ := http.NewRequest("GET", base+p+"?_format=json", nil)
			req.Header.Set("Authorization", "Bearer not-for-upstream")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != `{"from":"fhirwall-local"}` {
				t.Fatalf("%s: want the local listener's answer, got %d %s", p, resp.StatusCode, b)
			}
			if len(upstreamHits()) != fhirBefore {
				t.Fatalf("%s reached the FHIR server: %+v", p, upstreamHits()[fhirBefore:])
			}
			lh := localRequests()
			if len(lh) != localBefore+1 || lh[len(lh)-1].path != p+"?_format=json" || lh[len(lh)-1].patient != "" {
				t.Fatalf("%s: local listener saw %+v (want the path unchanged and no Authorization)", p, lh[localBefore:])
			}
			if authz.count() != checksBefore+1 || authz.last().GetAttributes().GetRequest().GetHttp().GetPath() != p+"?_format=json" {
				t.Fatalf("%s: ext_authz was not asked", p)
			}
			if resp.Header.Get("x-fake-extproc") != "seen" {
				t.Fatalf("%s: the response did not pass ext_proc (no audit)", p)
			}
		}
		// Only the exact paths: anything else below the base is the FHIR server's.
		before := len(localRequests())
		if r := do(t, "GET", "/patient-access/fhir/metadata/extra", nil, nil); r.status != 200 || len(localRequests()) != before {
			t.Fatalf("/metadata/extra: %d, local hits %d→%d", r.status, before, len(localRequests()))
		}
		if h := upstreamHits(); h[len(h)-1].path != "/fhir/metadata/extra" {
			t.Fatalf("FHIR server saw %+v", h[len(h)-1])
		}
	})
	t.Run("ext_authz denial keeps fhirwall-proxy's status and OperationOutcome", func(t *testing.T) {
		for path, status := range map[string]int{"/patient-access/fhir/deny": 403, "/patient-access/fhir/deny-503": 503} {
			r := do(t, "GET", path, nil, nil)
			if r.status != status || r.body != fakeDenialBody || r.contentType != fhirJSON {
				t.Fatalf("%s: want %d with the proxy's body, got %d %s %s", path, status, r.status, r.contentType, r.body)
			}
		}
	})
	t.Run("ext_authz error_response keeps fhirwall-proxy's OperationOutcome", func(t *testing.T) {
		r := do(t, "GET", "/patient-access/fhir/error-response", nil, nil)
		if r.status != 503 || r.body != fakeDenialBody || r.contentType != fhirJSON {
			t.Fatalf("want 503 with the proxy's body, got %d %s %s", r.status, r.contentType, r.body)
		}
	})
	t.Run("path outside every API is a 404 OperationOutcome without asking ext_authz", func(t *testing.T) {
		before := authz.count()
		for _, p := range []string{"/metadata", "/patient-access/fhirX/metadata", "/fhir/metadata", "/patient-access/fhir/../../fhir/metadata"} {
			wantOutcome(t, do(t, "GET", p, nil, nil), 404, "not-found")
		}
		if authz.count() != before {
			t.Fatal("ext_authz was asked about a path no API serves")
		}
	})
	t.Run("Envoy's own 404 is outcome's 404, byte for byte", func(t *testing.T) {
		if r := do(t, "GET", "/nowhere", nil, nil); r.status != 404 || r.body != string(outcome.NotFound.Body()) {
			t.Fatalf("got %d %s, want %s", r.status, r.body, outcome.NotFound.Body())
		}
	})
	corsDo := func(t *testing.T, method, path string, header http.Header) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		req.Header = header
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	preflight := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}}
	}
	t.Run("a preflight is answered by Envoy, without ext_authz or the FHIR server, with CORS headers only for an admitted origin", func(t *testing.T) {
		before, hitsBefore := authz.count(), len(upstreamHits())
		for _, tc := range []struct {
			path, origin string
			admitted     bool
		}{
			{"/patient-access/fhir/Patient/member-01", "https://app.example", true},
			{"/patient-access/fhir/Patient/member-01", "https://evil.example", false},
			{"/patient-access/fhir/metadata", "https://anyone.example", true},
			{"/patient-access/fhir/.well-known/smart-configuration", "https://anyone.example", true},
		} {
			resp := corsDo(t, "OPTIONS", tc.path, preflight(tc.origin))
			acao := resp.Header.Get("Access-Control-Allow-Origin")
			if resp.StatusCode != 200 || (tc.admitted && acao != tc.origin) || (!tc.admitted && acao != "") {
				t.Fatalf("%s from %s: got %d ACAO %q", tc.path, tc.origin, resp.StatusCode, acao)
			}
			if tc.admitted && (!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
				!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET")) {
				t.Fatalf("%s: preflight headers %v", tc.path, resp.Header)
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Fatalf("%s: credentials allowed", tc.path)
			}
		}
		if authz.count() != before || len(upstreamHits()) != hitsBefore {
			t.Fatal("a preflight reached ext_authz or the FHIR server")
		}
	})
	t.Run("answers and refusals to an admitted origin carry its ACAO, Vary and the exposed headers; others get none", func(t *testing.T) {
		for _, p := range []string{"/patient-access/fhir/Patient/member-01", "/patient-access/fhir/Patient/deny"} {
			resp := corsDo(t, "GET", p, http.Header{"Origin": {"https://app.example"}})
			if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
				!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
				t.Fatalf("%s: got %d %v", p, resp.StatusCode, resp.Header)
			}
			if p == "/patient-access/fhir/Patient/member-01" && !slices.Contains(resp.Header.Values("Vary"), "Origin") {
				t.Fatalf("%s: no Vary: Origin in %v", p, resp.Header)
			}
			resp = corsDo(t, "GET", p, http.Header{"Origin": {"https://evil.example"}})
			if resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("%s: a foreign origin got ACAO", p)
			}
		}
	})
	t.Run("escaped slash is refused with an OperationOutcome", func(t *testing.T) {
		wantOutcome(t, do(t, "GET", "/patient-access/fhir/Patient%2Fmember-02", nil, nil), 400, "invalid")
	})
	t.Run("body over the ext_authz limit is a 413 OperationOutcome", func(t *testing.T) {
		before := len(upstreamHits())
		wantOutcome(t, do(t, "POST", "/patient-access/fhir/Patient/_search", bytes.NewReader(make([]byte, authzMaxRequestBytes+1)),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}), 413, "too-long")
		if len(upstreamHits()) != before {
			t.Fatal("oversized body reached the FHIR server")
		}
	})
	t.Run("ext_authz's dynamic metadata reaches ext_proc with the request and the response headers", func(t *testing.T) {
		const p = "/patient-access/fhir/Patient/metadata-carried"
		if r := do(t, "GET", p, nil, nil); r.status != 200 {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		want := "sealed:" + p
		for _, kind := range []string{"request_headers", "response_headers"} {
			if got := extproc.sawSealed(p, kind); got != want {
				t.Fatalf("ext_proc's %s brought %q, want ext_authz's %q", kind, got, want)
			}
		}
	})
	t.Run("ext_proc is sent only the headers it reads: never the bearer token", func(t *testing.T) {
		if r := do(t, "GET", "/patient-access/fhir/Patient/forwarded", nil, http.Header{"Authorization": {"Bearer secret-token"},
			"X-Other": {"x"}}); r.status != 200 {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		seen := extproc.sawHeaders()
		for _, h := range seen {
			if !slices.Contains(extProcForwardedHeaders, h) {
				t.Errorf("Envoy sent ext_proc %q, which is not in forward_rules (sent: %q)", h, seen)
			}
		}
		for _, h := range []string{"x-request-id", ":status", "content-type"} {
			if !slices.Contains(seen, h) {
				t.Errorf("Envoy did not send ext_proc %q (sent: %q)", h, seen)
			}
		}
	})
	t.Run("a request body ext_proc asks for via mode_override comes whole, and its answer replaces the FHIR server's", func(t *testing.T) {
		const p = "/patient-access/fhir/Patient/$adapter-match"
		body := `{"resourceType":"Parameters","parameter":[{"name":"MemberPatient"}]}`
		before := len(upstreamHits())
		r := do(t, "POST", p, strings.NewReader(body), http.Header{"Content-Type": {fhirJSON}})
		if r.status != 200 || r.body != "adapter:"+body {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if got := extproc.sawSealed(p, "request_body"); got != "sealed:"+p {
			t.Fatalf("the request body message brought %q", got)
		}
		for _, h := range upstreamHits()[before:] {
			if strings.Contains(h.path, "adapter-match") {
				t.Fatalf("the FHIR server was asked %s, which the adapter answers", h.path)
			}
		}
	})
	t.Run("headers-only exchanges never send the body to ext_proc", func(t *testing.T) {
		before := len(extproc.sawBodies())
		if r := do(t, "GET", "/patient-access/fhir/Patient/member-01", nil, nil); r.status != 200 || r.body != `{"resourceType":"CapabilityStatement"}` {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		if got := extproc.sawBodies()[before:]; len(got) != 0 {
			t.Fatalf("ext_proc was sent bodies %v for a headers-only exchange", got)
		}
	})
	t.Run("a body ext_proc asked for via mode_override is replaced, content-length and all", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/patient-access/fhir/Patient/enforce", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != fakeEnforcedBody || resp.ContentLength != int64(len(fakeEnforcedBody)) ||
			resp.Header.Get("content-type") != fhirJSON {
			t.Fatalf("got %d %s content-length %d %s", resp.StatusCode, resp.Header.Get("content-type"), resp.ContentLength, b)
		}
		if got := extproc.sawBodies(); len(got) == 0 || got[len(got)-1] != len(`{"resourceType":"CapabilityStatement"}`) {
			t.Fatalf("ext_proc saw bodies %v, want the upstream's whole body", got)
		}
	})
	t.Run("an immediate response at the body replaces the upstream answer", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/patient-access/fhir/Patient/enforce-404", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || string(b) != fakeDenialBody || resp.Header.Get("x-fhirwall-decision-id") != "d-404" {
			t.Fatalf("got %d %v %s", resp.StatusCode, resp.Header, b)
		}
	})
	t.Run("a body of half the buffer limit goes to ext_proc and back whole", func(t *testing.T) {
		r := do(t, "GET", "/patient-access/fhir/Patient/enforce-large", nil, nil)
		if r.status != 200 || len(r.body) != responseBufferLimitBytes/2+len(`{"resourceType":"Bundle","padding":""}`) {
			t.Fatalf("got %d, %d bytes: %.200s", r.status, len(r.body), r.body)
		}
	})
	t.Run("a body over the buffer limit is refused, never passed unchecked", func(t *testing.T) {
		before := len(extproc.sawBodies())
		r := do(t, "GET", "/patient-access/fhir/Patient/enforce-big", nil, nil)
		if r.status < 500 || strings.Contains(r.body, "xxxx") || !strings.Contains(r.body, `"resourceType":"OperationOutcome"`) {
			t.Fatalf("got %d %s %.200s", r.status, r.contentType, r.body)
		}
		t.Logf("over the limit: %d %s %s; ext_proc was sent bodies %v", r.status, r.contentType, r.body, extproc.sawBodies()[before:])
	})
	t.Run("authz service down fails closed with a 503 OperationOutcome", func(t *testing.T) {
		g.Stop()
		before, localBefore := len(upstreamHits()), len(localRequests())
		for _, p := range []string{"/patient-access/fhir/metadata", "/patient-access/fhir/Patient"} {
			wantOutcome(t, do(t, "GET", p, nil, nil), 503, "transient")
			if resp := corsDo(t, "GET", p, nil); resp.Header.Get("Retry-After") == "" {
				t.Fatalf("%s: 503 without Retry-After: %v", p, resp.Header)
			}
		}
		if len(upstreamHits()) != before || len(localRequests()) != localBefore {
			t.Fatal("request was answered without a decision")
		}
	})
}
