//go:build e2e

// Package replicas is the end-to-end test of issue 17 against the real stack: three fhirwall-proxy replicas
// and two Envoys (test/stack/replicas.sh) in front of the stack's HAPI, Keycloak, Kafka and PostgreSQL.
// Requests of one member's search, its pages and one provider's export go to a different replica each; one
// replica is SIGKILLed under load; every answer's audit record must reach Kafka, and `fhirwall audit verify`
// must prove every replica's chain whole.
package replicas

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackaudit"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// Replicas as test/stack/replicas.sh starts them (ports.env names them).
const replicaCount = 3

func standaloneURL(k int) string { return fmt.Sprintf("http://127.0.0.1:828%d", k) }
func replicaAdminURL(k int) string {
	return fmt.Sprintf("http://127.0.0.1:92%d0", k)
}

var (
	envoyURLs      = []string{"https://127.0.0.1:10010", "https://127.0.0.1:10020"}
	envoyAdminURLs = []string{"http://127.0.0.1:9911", "http://127.0.0.1:9921"}
)

// mode is one way apps reach the replicas: their standalone faces, or the two Envoys in front of them all.
type mode struct {
	name  string
	faces []string
}

func modes() []mode {
	var standalone []string
	for k := 1; k <= replicaCount; k++ {
		standalone = append(standalone, standaloneURL(k))
	}
	return []mode{{"standalone", standalone}, {"envoy", envoyURLs}}
}

var (
	setupOnce sync.Once
	setupErr  error
	skipWhy   string
	started   bool
	topic     string
	client    *http.Client
	// seen collects every answer the suite got, for the audit check at the end.
	seenMu sync.Mutex
	seen   []stackaudit.Expectation
)

func TestMain(m *testing.M) {
	code := m.Run()
	if started {
		if out, err := script("stop"); err != nil {
			fmt.Fprintf(os.Stderr, "replicas.sh stop: %v\n%s", err, out)
		}
	}
	os.Exit(code)
}

func script(args ...string) ([]byte, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(stackenv.Root(), "test", "stack", "replicas.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "FHIRWALL_STATE="+stackenv.StateDir(), "REPLICAS_AUDIT_TOPIC="+topic)
	return cmd.CombinedOutput()
}

// binDir is where replicas.sh takes its binaries (REPLICAS_BIN, else the stack's).
func binDir() string {
	if d := os.Getenv("REPLICAS_BIN"); d != "" {
		return d
	}
	return filepath.Join(stackenv.StateDir(), "bin")
}

// setup starts the replicas once for the whole package, on an audit topic of the suite's own.
func setup(t *testing.T) {
	t.Helper()
	setupOnce.Do(func() {
		var err error
		if client, err = stackenv.Client(30 * time.Second); err != nil {
			setupErr = err
			return
		}
		if resp, err := http.Get(stackenv.ProxyAdminURL + "/readyz"); err != nil {
			skipWhy = fmt.Sprintf("the stack is not up (fhirwall-proxy %s: %v): make stack-up", stackenv.ProxyAdminURL, err)
			return
		} else {
			resp.Body.Close()
		}
		if _, err := os.Stat(filepath.Join(binDir(), "fhirwall-proxy")); err != nil {
			skipWhy = fmt.Sprintf("no fhirwall binaries in %s: test/stack/fhirwall.sh build", binDir())
			return
		}
		if topic, err = stackaudit.NewTopic("fhirwall.test.replicas-e2e", 3); err != nil {
			setupErr = err
			return
		}
		_, _ = script("stop") // leftovers of an interrupted run
		started = true
		if out, err := script("start", fmt.Sprint(replicaCount)); err != nil {
			setupErr = fmt.Errorf("replicas.sh start %d: %v\n%s", replicaCount, err, out)
		}
	})
	if skipWhy != "" {
		require.Missing(t, skipWhy)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// record notes an answer whose audit record must reach the topic.
func record(what string, status int, h http.Header) {
	seenMu.Lock()
	defer seenMu.Unlock()
	seen = append(seen, stackaudit.Expectation{What: what, DecisionID: h.Get("X-Fhirwall-Decision-Id"), Status: status})
}

// onFace moves an absolute URL the gateway wrote (a next link, a status or file URL) to face: the same path
// and query, another replica or Envoy.
func onFace(t *testing.T, raw, face string) string {
	t.Helper()
	i := strings.Index(raw, "://")
	if i < 0 {
		t.Fatalf("not an absolute URL: %q", raw)
	}
	rest := raw[i+3:]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		t.Fatalf("URL without a path: %q", raw)
	}
	return face + rest[j:]
}
