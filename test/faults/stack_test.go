//go:build e2e && faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	issuer = "http://127.0.0.1:8180/realms/fhirwall"
	// apiPath is the Patient Access API's FHIR base below Envoy's and the standalone proxy's root.
	apiPath = "/patient-access/fhir"
	// ownEOBSearch is an allowed request of member01 that fhirwall forwards to the FHIR server without
	// consulting it first.
	ownEOBSearch = "/ExplanationOfBenefit?patient=member-01"
	// refusalBound is how long a fail-closed refusal may take: the ext_authz and ext_proc timeouts are 2 s
	// (internal/xds/config.go), Envoy's FHIR cluster connect timeout 2 s.
	refusalBound = 5 * time.Second
)

// leaks are texts of Envoy's, Go's or HAPI's own error reporting that must never reach a client.
var leaks = []string{
	"upstream connect error", "reset reason", "connection refused", "connection termination",
	"remote_connection_failure", "delayed_connect_error", "upstream_reset", "no healthy upstream",
	"dial tcp", "127.0.0.1:8090", "HAPI", "java.", "Exception",
}

// envoyURL and standaloneURL are the two ways into the Patient Access API.
func envoyURL(path string) string      { return stackenv.EnvoyURL() + apiPath + path }
func standaloneURL(path string) string { return stackenv.StandaloneURL + apiPath + path }

// answer is what a client saw, and how long it waited for it.
type answer struct {
	status  int
	body    []byte
	elapsed time.Duration
}

func (a answer) String() string {
	return fmt.Sprintf("%d after %v: %.300s", a.status, a.elapsed.Round(time.Millisecond), a.body)
}

var (
	clientOnce sync.Once
	client     *http.Client
	clientErr  error
)

// httpClient reaches Envoy (trusting the stack's CA when it runs TLS) and the standalone proxy. Its timeout
// is well above refusalBound so a hang shows up as a measured time, not as a client error.
func httpClient(t *testing.T) *http.Client {
	t.Helper()
	clientOnce.Do(func() { client, clientErr = stackenv.Client(30 * time.Second) })
	if clientErr != nil {
		t.Fatalf("stack HTTP client: %v", clientErr)
	}
	return client
}

func get(t *testing.T, url, token string) answer {
	t.Helper()
	a, err := tryGet(t, url, token)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return a
}

func tryGet(t *testing.T, url, token string) (answer, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := httpClient(t).Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, body: b, elapsed: time.Since(start)}, nil
}

// session holds member01's access token from a real PKCE login and logs in again before it expires
// (Keycloak's tokens live 5 minutes; the FHIR server restart alone may take three).
type session struct {
	token   string
	renewAt time.Time
}

func (s *session) Token(t *testing.T) string {
	t.Helper()
	if s.token != "" && time.Now().Before(s.renewAt) {
		return s.token
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := smartclient.AuthorizationCodePKCE(ctx, issuer, "patient-app", "http://127.0.0.1:8089/callback",
		[]string{"openid", "fhirUser", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/Patient.rs"},
		"member01", "fhirwall-demo")
	if err != nil {
		t.Fatalf("login member01: %v (is the stack up? make stack-up)", err)
	}
	if tok.Patient != "member-01" {
		t.Fatalf("token response patient = %q, want member-01", tok.Patient)
	}
	s.token = tok.AccessToken
	s.renewAt = time.Now().Add(time.Duration(tok.ExpiresIn)*time.Second - time.Minute)
	return s.token
}

// requireOperationOutcome503 checks a fail-closed refusal: 503, a FHIR OperationOutcome, nothing of the
// components' own error texts, and no claims data.
func requireOperationOutcome503(t *testing.T, what string, a answer) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable {
		t.Errorf("%s: got %s, want 503", what, a)
	}
	var r struct {
		ResourceType string
		Issue        []struct{ Severity, Code, Diagnostics string }
	}
	if err := json.Unmarshal(a.body, &r); err != nil || r.ResourceType != "OperationOutcome" || len(r.Issue) == 0 {
		t.Errorf("%s: refusal is not an OperationOutcome: %s", what, a)
	}
	low := strings.ToLower(string(a.body))
	var leaked []string
	for _, l := range leaks {
		if strings.Contains(low, strings.ToLower(l)) {
			leaked = append(leaked, l)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("%s: refusal leaks internals %q: %s", what, leaked, a.body)
	}
	if strings.Contains(string(a.body), "ExplanationOfBenefit") {
		t.Errorf("%s: refusal carries claims data: %s", what, a.body)
	}
	if a.elapsed > refusalBound {
		t.Errorf("%s: refusal took %v, want under %v", what, a.elapsed, refusalBound)
	}
}

// waitFor200 repeats a request until it answers 200, and returns how long that took.
func waitFor200(t *testing.T, what string, s *session, url func(string) string, path string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < limit {
		a, err := tryGet(t, url(path), s.Token(t))
		if err == nil && a.status == http.StatusOK {
			return time.Since(start)
		}
		if err != nil {
			last = err.Error()
		} else {
			last = a.String()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: no 200 within %v; last answer: %s", what, limit, last)
	return 0
}

// stack runs one of the stack's service scripts (test/stack/NAME.sh ARGS...).
func stack(t *testing.T, name string, args ...string) error {
	t.Helper()
	script := filepath.Join(stackenv.Root(), "test", "stack", name+".sh")
	start := time.Now()
	out, err := exec.Command("bash", append([]string{script}, args...)...).CombinedOutput()
	t.Logf("%s.sh %s: %v (%s)", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("%s.sh %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// pidOf reads the pid the stack scripts recorded for NAME (lib.sh pidfile: .fhirwall/run/NAME.pid).
func pidOf(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stackenv.StateDir(), "run", name+".pid"))
	if err != nil {
		t.Fatalf("pid of %s: %v (is the stack up? make stack-up)", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file of %s holds %q", name, b)
	}
	return pid
}

// signal sends sig to the process the scripts started for NAME and to its process group (start_bg runs
// each service in its own session, so the group is exactly that service).
func signal(pid int, sig syscall.Signal) error {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		return syscall.Kill(-pid, sig)
	}
	return syscall.Kill(pid, sig)
}

// freeze stops NAME's process with SIGSTOP until the returned function (also registered as a cleanup, so
// a failing test never leaves a service frozen) sends SIGCONT.
func freeze(t *testing.T, name string) (thaw func()) {
	t.Helper()
	pid := pidOf(t, name)
	if err := signal(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s (pid %d): %v", name, pid, err)
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			if err := signal(pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT %s (pid %d): %v", name, pid, err)
			}
		})
	}
	t.Cleanup(thaw)
	return thaw
}

// fhirServerStat sums one statistic over Envoy's clusters for the FHIR server: "fhir_server", or one
// "fhir_server_<api>" per API (internal/xds FHIRServerCluster, FHIRServerClusterPrefix).
func fhirServerStat(t *testing.T, stat string) int {
	t.Helper()
	resp, err := http.Get(stackenv.EnvoyAdminURL + "/stats")
	if err != nil {
		t.Fatalf("envoy stats: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("envoy stats: %v", err)
	}
	sum, found := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ": ")
		cluster, ok2 := strings.CutSuffix(name, "."+stat)
		if !ok || !ok2 || !strings.HasPrefix(cluster, "cluster.fhir_server") || strings.Contains(strings.TrimPrefix(cluster, "cluster."), ".") {
			continue
		}
		if cluster != "cluster.fhir_server" && !strings.HasPrefix(cluster, "cluster.fhir_server_") {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("envoy stat %s: %q", name, v)
		}
		sum, found = sum+n, true
	}
	if !found {
		t.Fatalf("envoy has no %s for a FHIR server cluster", stat)
	}
	return sum
}

// upstreamRequests is Envoy's count of requests sent to the FHIR server.
func upstreamRequests(t *testing.T) int { return fhirServerStat(t, "upstream_rq_total") }

// ownEOBID finds one of member01's ExplanationOfBenefit ids straight from HAPI (setup, not through fhirwall).
func ownEOBID(t *testing.T) string {
	t.Helper()
	a := get(t, stackenv.HAPIURL+"/ExplanationOfBenefit?patient=member-01&_elements=id&_count=1", "")
	var b struct {
		Entry []struct{ Resource struct{ ID string } }
	}
	if err := json.Unmarshal(a.body, &b); err != nil || len(b.Entry) == 0 {
		t.Fatalf("no EOB of member-01 in HAPI (seeded?): %s", a)
	}
	return b.Entry[0].Resource.ID
}

// healthy checks that the stack answers member01's own EOB search with 200 both ways before a fault is
// injected, so a failure later is the fault's doing.
func healthy(t *testing.T, s *session) {
	t.Helper()
	for _, way := range []struct {
		name string
		url  func(string) string
	}{{"envoy", envoyURL}, {"standalone", standaloneURL}} {
		if a := get(t, way.url(ownEOBSearch), s.Token(t)); a.status != http.StatusOK {
			t.Fatalf("before the fault, %s answered %s", way.name, a)
		}
	}
}

func TestMain(m *testing.M) {
	resp, err := http.Get(stackenv.EnvoyAdminURL + "/ready")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults: the stack is not up; run `make stack-up`")
		os.Exit(1)
	}
	resp.Body.Close()
	os.Exit(m.Run())
}
