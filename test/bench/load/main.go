// Command load is fhirwall's side-by-side benchmark (make bench): on loopback and in one run, it measures the
// limit (a bare Go httputil.ReverseProxy, and Envoy alone), fhirwall standalone, Envoy + fhirwall (ext_authz
// and ext_proc, config from fhirwall-xds), and the peer slot (Envoy + any ext_authz gRPC server at
// $PEER_AUTHZ_ADDR, e.g. opa-envoy-plugin with test/bench/peer) in front of a fast static FHIR responder.
// For each it prints throughput at saturation, latency at fixed rates (constant-rate load from vegeta), CPU
// seconds per 1,000 requests and peak RSS of the system under test, and the ratios to the limit and the peer.
//
//	go run ./test/bench/load [-duration 10s] [-rates 500,1000,2000] [-only bare,envoy,standalone,envoy-fhirwall,peer]
//
// It needs the stack's Kafka for fhirwall's audit shipping (make bench starts it) and Envoy (test/stack/envoy.sh).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/fhirwall/fhirwall/internal/audit"
)

func main() {
	role := flag.String("role", "", "internal: run as the static FHIR responder (upstream) or the bare proxy (bareproxy)")
	addr := flag.String("addr", "", "internal: listen address of a role")
	to := flag.String("to", "", "internal: the bare proxy's upstream URL")
	o := options{}
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured attack")
	rates := flag.String("rates", "500,1000,2000", "fixed request rates (per second) to measure latency at")
	flag.IntVar(&o.workers, "saturation-workers", 32, "concurrent requests for the saturation run")
	only := flag.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames, ","))
	flag.StringVar(&o.out, "out", ".fhirwall/bench", "where binaries, configs, logs and results go")
	proxyEnv := flag.String("proxy-env", "", "extra environment for fhirwall-proxy, comma-separated (e.g. GOGC=400)")
	flag.StringVar(&o.upstream, "upstream", "static", "static: the fast static FHIR responder, one EOB search (throughput); hapi: the stack's HAPI FHIR (make stack-up) with a mix of member-01's reads and searches")
	flag.DurationVar(&o.soak, "soak", 0, "run fhirwall's scenarios (standalone, envoy-fhirwall) at -soak-rate for this long instead of measuring them, e.g. 30m: errors, RSS and goroutine slopes, GC pauses")
	flag.IntVar(&o.soakRate, "soak-rate", 500, "request rate of -soak")
	flag.IntVar(&o.runs, "runs", 1, "measure every scenario this many times, interleaved (all scenarios once, then again), and report each figure's median")
	flag.BoolVar(&o.profile, "profile", false, "save fhirwall-proxy's CPU, block and mutex profiles and goroutines during the first rate and the saturation run (go tool pprof them)")
	flag.Parse()
	var err error
	switch *role {
	case "upstream":
		err = serveUpstream(*addr)
	case "bareproxy":
		err = serveBareProxy(*addr, *to)
	case "":
		for _, r := range strings.Split(*rates, ",") {
			n, perr := strconv.Atoi(strings.TrimSpace(r))
			if perr != nil || n <= 0 {
				fmt.Fprintf(os.Stderr, "load: -rates %q: want positive integers, e.g. 500,1000,2000\n", *rates)
				os.Exit(2)
			}
			o.rates = append(o.rates, n)
		}
		if *only != "" {
			o.only = strings.Split(*only, ",")
		}
		if *proxyEnv != "" {
			o.proxyEnv = strings.Split(*proxyEnv, ",")
		}
		err = run(o)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type options struct {
	duration time.Duration
	rates    []int
	workers  int
	only     []string
	out      string
	profile  bool
	upstream string
	proxyEnv []string
	// soak, when set, replaces the measurements of fhirwall's scenarios with one attack at soakRate that long,
	// sampled every 10 s (soak.go): errors, RSS and goroutine slopes, GC pauses.
	soak     time.Duration
	soakRate int
	// runs is how many times each scenario is measured; the report gives each figure's median.
	runs int
}

var scenarioNames = []string{"bare", "envoy", "standalone", "envoy-fhirwall", "peer"}

// scenario is one system under test: how to start it and where to send the request.
type scenario struct {
	name, title string
	url         string
	start       func(dir string) ([]*proc, error)
}

// result is what one scenario measured.
type result struct {
	Name       string        `json:"name"`
	Title      string        `json:"title"`
	Saturation float64       `json:"saturation_rps"`
	SatP99     time.Duration `json:"saturation_p99_ns"`
	Rates      []rateResult  `json:"rates"`
	CPUPer1000 float64       `json:"cpu_seconds_per_1000"`
	PeakRSS    int64         `json:"peak_rss_bytes"`
	Skipped    string        `json:"skipped,omitempty"`
	// CPUByProcess splits CPUPer1000 by process (Envoy, fhirwall-proxy, fhirwall-xds, the peer): whose CPU a
	// request costs.
	CPUByProcess map[string]float64 `json:"cpu_seconds_per_1000_by_process,omitempty"`
	// RunSaturations is each run's saturation when the figures are medians of several runs (-runs).
	RunSaturations []float64 `json:"run_saturations_rps,omitempty"`
}

type rateResult struct {
	Rate       int           `json:"rate"`
	Achieved   float64       `json:"achieved_rps"`
	Success    float64       `json:"success"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	P999       time.Duration `json:"p999_ns"`
	Max        time.Duration `json:"max_ns"`
	CPUPer1000 float64       `json:"cpu_seconds_per_1000"`
}

func run(o options) error {
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run from the repository root (make bench)")
	}
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	runDir := filepath.Join(out, "run-"+time.Now().UTC().Format("20060102-150405"))
	bin := filepath.Join(out, "bin")
	for _, d := range []string{runDir, bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	fmt.Printf("building fhirwall-proxy and fhirwall-xds into %s\n", bin)
	for _, b := range [][2]string{{"fhirwall-proxy", "./cmd/proxy"}, {"fhirwall-xds", "./cmd/xds"}} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, b[0]), b[1]).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	envoy, err := envoyBinary(root)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	is, err := startIssuer(issuerAddr, filepath.Join(out, "issuer-key.pem"))
	if err != nil {
		return err
	}
	token, err := is.token()
	if err != nil {
		return err
	}
	peerData, _ := json.Marshal(map[string]any{"peer": map[string]any{"jwks": string(is.jwks), "issuer": is.url, "audience": audience}})
	if err := os.WriteFile(filepath.Join(out, "peer-data.json"), peerData, 0o600); err != nil {
		return err
	}
	fmt.Printf("the peer's data (issuer, JWKS): %s (test/bench/peer/README.md)\n", filepath.Join(out, "peer-data.json"))
	upstream, targets := upstreamAddr, []string{"/ExplanationOfBenefit?patient=member-01"}
	switch o.upstream {
	case "static":
		up, err := start(runDir, "upstream", nil, self, "-role", "upstream", "-addr", upstreamAddr)
		if err != nil {
			return err
		}
		defer up.stop()
		if err := waitPort(upstreamAddr, 10*time.Second); err != nil {
			return err
		}
	case "hapi":
		// The stack's HAPI with the seed (test/seed): member-01's claims, coverage and demographics.
		upstream = hapiAddr
		targets = hapiMix
		if err := waitHTTP("http://"+hapiAddr+"/fhir/Patient/member-01", 200, 5*time.Second); err != nil {
			return fmt.Errorf("-upstream hapi needs the stack's seeded HAPI (make stack-up): %w", err)
		}
	default:
		return fmt.Errorf("-upstream %q: static or hapi", o.upstream)
	}

	envoyArgs := func(cfg string) []string {
		return []string{"-c", cfg, "--concurrency", "2", "--disable-hot-restart", "--log-level", "warn"}
	}
	writeFile := func(dir, name, content string) string {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	fhirwallProxy := func(dir string, standalone bool) (*proc, error) {
		cfg, err := fhirwallConfig(dir, is.url, upstream, standalone)
		if err != nil {
			return nil, err
		}
		if err := audit.GenerateKey(filepath.Join(dir, "signing.key")); err != nil {
			return nil, err
		}
		p, err := start(dir, "fhirwall-proxy", o.proxyEnv, filepath.Join(bin, "fhirwall-proxy"), "-config", cfg)
		if err != nil {
			return nil, err
		}
		return p, waitHTTP("http://"+proxyAdminAddr+"/readyz", 200, 30*time.Second)
	}
	const apiPath = "/patient-access/fhir"
	peer := os.Getenv("PEER_AUTHZ_ADDR")
	scenarios := []scenario{
		{"bare", "bare Go httputil.ReverseProxy (the limit)", "http://" + bareProxyAddr + apiPath, func(dir string) ([]*proc, error) {
			p, err := start(dir, "bareproxy", nil, self, "-role", "bareproxy", "-addr", bareProxyAddr, "-to", "http://"+upstream+"/fhir")
			if err != nil {
				return nil, err
			}
			return []*proc{p}, waitPort(bareProxyAddr, 10*time.Second)
		}},
		{"envoy", "Envoy alone (the limit)", fmt.Sprintf("http://127.0.0.1:%d%s", envoyAlonePort, apiPath), func(dir string) ([]*proc, error) {
			p, err := start(dir, "envoy", nil, envoy, envoyArgs(writeFile(dir, "envoy.yaml", envoyStaticBootstrap(envoyAlonePort, envoyAlonePort+900, upstream, "")))...)
			if err != nil {
				return nil, err
			}
			return []*proc{p}, waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ready", envoyAlonePort+900), 200, 30*time.Second)
		}},
		{"standalone", "fhirwall standalone", "http://" + standaloneAddr + apiPath, func(dir string) ([]*proc, error) {
			p, err := fhirwallProxy(dir, true)
			return []*proc{p}, err
		}},
		{"envoy-fhirwall", "Envoy + fhirwall (ext_authz, ext_proc)", fmt.Sprintf("http://127.0.0.1:%d%s", envoyFhirwallPort, apiPath), func(dir string) ([]*proc, error) {
			px, err := fhirwallProxy(dir, false)
			if err != nil {
				return []*proc{px}, err
			}
			xds, err := start(dir, "fhirwall-xds", nil, filepath.Join(bin, "fhirwall-xds"), "-config", filepath.Join(dir, "fhirwall.yaml"))
			if err != nil {
				return []*proc{px}, err
			}
			if err := waitHTTP("http://"+xdsAdminAddr+"/readyz", 200, 30*time.Second); err != nil {
				return []*proc{px, xds}, err
			}
			boot, err := envoyADSBootstrap(root, envoyFhirwallPort+900)
			if err != nil {
				return []*proc{px, xds}, err
			}
			ev, err := start(dir, "envoy", nil, envoy, envoyArgs(writeFile(dir, "envoy.yaml", boot))...)
			if err != nil {
				return []*proc{px, xds}, err
			}
			return []*proc{px, xds, ev}, waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ready", envoyFhirwallPort+900), 200, 30*time.Second)
		}},
		{"peer", "Envoy + peer ext_authz at $PEER_AUTHZ_ADDR", fmt.Sprintf("http://127.0.0.1:%d%s", envoyPeerPort, apiPath), func(dir string) ([]*proc, error) {
			p, err := start(dir, "envoy", nil, envoy, envoyArgs(writeFile(dir, "envoy.yaml", envoyStaticBootstrap(envoyPeerPort, envoyPeerPort+900, upstream, peer)))...)
			if err != nil {
				return nil, err
			}
			ps := []*proc{p}
			// The peer runs outside the harness; PEER_PID counts its CPU and peak RSS in its row beside Envoy's.
			if v := os.Getenv("PEER_PID"); v != "" {
				pid, err := strconv.Atoi(v)
				if err != nil || pid <= 0 {
					return ps, fmt.Errorf("PEER_PID %q: want the peer's process id", v)
				}
				ps = append(ps, &proc{name: "peer", pid: pid})
			}
			return ps, waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ready", envoyPeerPort+900), 200, 30*time.Second)
		}},
	}

	fmt.Printf("machine: %d CPUs, %s/%s, %s; load generator, upstream and system under test share them\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel())
	var results []result
	var soaks []soakResult
	runs := map[string][]result{} // scenario → its measured runs
	for run := range max(o.runs, 1) {
		for _, sc := range scenarios {
			if len(o.only) > 0 && !slices.Contains(o.only, sc.name) {
				continue
			}
			if sc.name == "peer" && o.upstream == "hapi" {
				runs[sc.name] = []result{{Name: sc.name, Title: sc.title, Skipped: "the peer policy decides the EOB search only (-upstream static)"}}
				continue
			}
			if sc.name == "peer" && peer == "" {
				if run == 0 {
					fmt.Println("\npeer slot empty: set PEER_AUTHZ_ADDR to an ext_authz gRPC server (test/bench/peer/README.md: opa-envoy-plugin) to measure it")
				}
				runs[sc.name] = []result{{Name: sc.name, Title: sc.title, Skipped: "PEER_AUTHZ_ADDR not set"}}
				continue
			}
			if o.soak > 0 {
				if sc.name != "standalone" && sc.name != "envoy-fhirwall" {
					continue // a soak watches fhirwall-proxy
				}
				r, err := soak(o, runDir, sc, token, targets)
				if err != nil {
					return fmt.Errorf("%s soak: %w (logs in %s)", sc.name, err, filepath.Join(runDir, sc.name+"-soak"))
				}
				soaks = append(soaks, r)
				continue
			}
			dir := runDir
			if o.runs > 1 {
				dir = filepath.Join(runDir, fmt.Sprintf("run%d", run+1))
				fmt.Printf("\n(run %d of %d)", run+1, o.runs)
			}
			r, err := measure(o, dir, sc, token, targets)
			if err != nil {
				return fmt.Errorf("%s: %w (logs in %s)", sc.name, err, filepath.Join(dir, sc.name))
			}
			runs[sc.name] = append(runs[sc.name], r)
		}
		if o.soak > 0 {
			break
		}
	}
	for _, sc := range scenarios {
		if rs := runs[sc.name]; len(rs) > 0 {
			results = append(results, median(rs))
		}
	}
	if o.soak > 0 {
		var b strings.Builder
		b.WriteString("| mode | rate | duration | requests | errors | RSS slope (MB/min) | goroutines slope (/min) | worst 10 s p99 | GC pauses | GC pause p99 | GC pause max |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range soaks {
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %+.2f | %+.2f | %s | %d | ≤ %s | %s |\n", r.Name, r.Rate, r.Duration, r.Requests, r.Errors,
				r.RSSSlopeMBMin, r.GoroutinesSlope, rd(r.WorstP99), r.GCPauses,
				time.Duration(r.GCPauseP99*float64(time.Second)).Round(time.Microsecond),
				time.Duration(r.GCPauseMax*float64(time.Second)).Round(time.Microsecond))
		}
		fmt.Print("\n" + b.String())
		_ = os.WriteFile(filepath.Join(runDir, "soak.md"), []byte(b.String()), 0o600)
		fmt.Printf("\nresults: %s\n", runDir)
		return nil
	}
	table := report(results, o)
	fmt.Print("\n" + table)
	js, _ := json.MarshalIndent(results, "", "  ")
	_ = os.WriteFile(filepath.Join(runDir, "results.json"), js, 0o600)
	_ = os.WriteFile(filepath.Join(runDir, "results.md"), []byte(table), 0o600)
	fmt.Printf("\nresults: %s\n", runDir)
	return nil
}

func envoyBinary(root string) (string, error) {
	script := filepath.Join(root, "test", "stack", "envoy.sh")
	if out, err := exec.Command("bash", script, "install").CombinedOutput(); err != nil {
		return "", fmt.Errorf("envoy.sh install: %v\n%s", err, out)
	}
	out, err := exec.Command("bash", script, "bin").Output()
	if err != nil {
		return "", fmt.Errorf("envoy.sh bin: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

// measure starts sc, warms it up, attacks it at each fixed rate and at saturation, and stops it.
func measure(o options, runDir string, sc scenario, token string, paths []string) (result, error) {
	dir := filepath.Join(runDir, sc.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{}, err
	}
	fmt.Printf("\n== %s\n", sc.title)
	procs, err := sc.start(dir)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err != nil {
		return result{}, err
	}
	tr := targeter(sc.url, token, paths)
	for _, p := range paths {
		if err := check(sc.url+p, token); err != nil {
			return result{}, err
		}
	}
	res := result{Name: sc.name, Title: sc.title}
	attack(tr, 200, 0, 3*time.Second) // warm-up: connections, token cache, JIT of Envoy's paths
	var totalCPU time.Duration
	var totalReq int
	start := cpuByProcess(procs)
	fhirwall := strings.Contains(sc.name, "standalone") || strings.Contains(sc.name, "fhirwall")
	for i, rate := range o.rates {
		var wg sync.WaitGroup
		if o.profile && fhirwall && i == 0 {
			// Where the time goes at the first (lowest) rate, the one whose p99 is compared: not saturation's.
			profiles(&wg, dir, fmt.Sprint(rate), o.duration-time.Second)
		}
		before := cpu(procs)
		m := attack(tr, rate, 0, o.duration)
		spent := cpu(procs) - before
		wg.Wait()
		saveStats(dir, sc, fmt.Sprint(rate), fhirwall)
		rr := rateResult{Rate: rate, Achieved: m.Throughput, Success: m.Success, P50: m.Latencies.P50, P99: m.Latencies.P99,
			P999: m.Latencies.Quantile(0.999), Max: m.Latencies.Max, CPUPer1000: spent.Seconds() / float64(m.Requests) * 1000}
		totalCPU += spent
		totalReq += int(m.Requests)
		res.Rates = append(res.Rates, rr)
		fmt.Printf("  %5d rps: achieved %7.0f  ok %5.1f%%  p50 %8s  p99 %8s  p99.9 %8s  cpu %.3f s/1000%s\n", rate, rr.Achieved,
			100*rr.Success, rd(rr.P50), rd(rr.P99), rd(rr.P999), rr.CPUPer1000, codes(m))
	}
	var wg sync.WaitGroup
	if o.profile && fhirwall {
		profiles(&wg, dir, "saturation", o.duration-time.Second)
	}
	before := cpu(procs)
	m := attack(tr, 0, o.workers, o.duration)
	spent := cpu(procs) - before
	wg.Wait()
	saveStats(dir, sc, "saturation", fhirwall)
	totalCPU += spent
	totalReq += int(m.Requests)
	res.Saturation, res.SatP99 = m.Throughput, m.Latencies.P99
	fmt.Printf("  saturation (%d concurrent): %7.0f rps ok %5.1f%%  p99 %s%s\n", o.workers, m.Throughput, 100*m.Success, rd(m.Latencies.P99), codes(m))
	res.CPUPer1000 = totalCPU.Seconds() / float64(totalReq) * 1000
	if len(procs) > 1 {
		res.CPUByProcess = map[string]float64{}
		var parts []string
		for name, end := range cpuByProcess(procs) {
			// The warm-up between the two readings is not in totalReq: scale to the measured attacks' total.
			res.CPUByProcess[name] = (end - start[name]).Seconds() / float64(totalReq) * 1000
		}
		scale := 0.0
		for _, v := range res.CPUByProcess {
			scale += v
		}
		for _, name := range slices.Sorted(maps.Keys(res.CPUByProcess)) {
			if scale > 0 {
				res.CPUByProcess[name] *= res.CPUPer1000 / scale
			}
			parts = append(parts, fmt.Sprintf("%s %.3f", name, res.CPUByProcess[name]))
		}
		fmt.Printf("  cpu by process (s per 1000 requests): %s\n", strings.Join(parts, ", "))
	}
	for _, p := range procs {
		if u, err := p.usage(); err == nil {
			res.PeakRSS += u.peakRSS
		}
	}
	fmt.Printf("  cpu %.3f s per 1000 requests, peak RSS %.0f MB (%s)\n", res.CPUPer1000, float64(res.PeakRSS)/(1<<20), names(procs))
	return res, nil
}

// check sends the request once: it must be 200, so a misconfigured scenario is not measured as fast refusals.
func check(url, token string) error {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d %.300s", url, resp.StatusCode, b)
	}
	return nil
}

// targeter cycles through the paths under base, all with member-01's token.
func targeter(base, token string, paths []string) vegeta.Targeter {
	var ts []vegeta.Target
	for _, p := range paths {
		ts = append(ts, vegeta.Target{Method: "GET", URL: base + p, Header: http.Header{"Authorization": {"Bearer " + token}}})
	}
	return vegeta.NewStaticTargeter(ts...)
}

// attack runs vegeta at rate per second (rate 0: as fast as workers concurrent requests allow) for d.
func attack(tr vegeta.Targeter, rate, workers int, d time.Duration) vegeta.Metrics {
	return attackWith(nil, tr, rate, workers, d)
}

// attackWith is attack through client's connections when client is set (a vegeta attacker is spent after one
// attack; its client is not), else through a new client's.
func attackWith(client *http.Client, tr vegeta.Targeter, rate, workers int, d time.Duration) vegeta.Metrics {
	var opts []func(*vegeta.Attacker)
	if client != nil {
		opts = append(opts, vegeta.Client(client))
	}
	opts = append(opts, vegeta.KeepAlive(true), vegeta.Connections(512), vegeta.Timeout(10*time.Second))
	pace := vegeta.Rate{Freq: rate, Per: time.Second}
	if rate == 0 {
		opts = append(opts, vegeta.Workers(uint64(workers)), vegeta.MaxWorkers(uint64(workers)))
	}
	atk := vegeta.NewAttacker(opts...)
	var m vegeta.Metrics
	ctx, cancel := context.WithTimeout(context.Background(), d+15*time.Second)
	defer cancel()
	for r := range atk.Attack(tr, pace, d, "bench") {
		m.Add(r)
		if ctx.Err() != nil {
			atk.Stop()
		}
	}
	m.Close()
	return m
}

func cpu(ps []*proc) time.Duration {
	var t time.Duration
	for _, p := range ps {
		if u, err := p.usage(); err == nil {
			t += u.cpu
		}
	}
	return t
}

// cpuByProcess is each process's CPU time so far, by name.
func cpuByProcess(ps []*proc) map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, p := range ps {
		if u, err := p.usage(); err == nil {
			m[p.name] += u.cpu
		}
	}
	return m
}

func names(ps []*proc) string {
	var n []string
	for _, p := range ps {
		n = append(n, p.name)
	}
	return strings.Join(n, " + ")
}

func codes(m vegeta.Metrics) string {
	if m.Success >= 1 {
		return ""
	}
	var parts []string
	for c, n := range m.StatusCodes {
		parts = append(parts, fmt.Sprintf("%s×%d", c, n))
	}
	slices.Sort(parts)
	return "  codes " + strings.Join(parts, " ")
}

func rd(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// profiles saves fhirwall-proxy's CPU, block and mutex profiles over d and its goroutines half way through
// (tag: the rate or "saturation"): what runs, what waits, and on what. Block and mutex profiles are empty
// unless the proxy samples them (proxy.pprof turns sampling on).
func profiles(wg *sync.WaitGroup, dir, tag string, d time.Duration) {
	secs := int(d.Seconds())
	for _, p := range []struct{ name, query string }{
		{"cpu", fmt.Sprintf("profile?seconds=%d", secs)},
		{"block", fmt.Sprintf("block?seconds=%d", secs)},
		{"mutex", fmt.Sprintf("mutex?seconds=%d", secs)},
	} {
		wg.Go(func() {
			saveURL(filepath.Join(dir, p.name+"-"+tag+".pprof"), "http://"+proxyAdminAddr+"/debug/pprof/"+p.query)
		})
	}
	wg.Go(func() {
		time.Sleep(d / 2)
		saveURL(filepath.Join(dir, "goroutines-"+tag+".txt"), "http://"+proxyAdminAddr+"/debug/pprof/goroutine?debug=1")
	})
	fmt.Printf("  profiles: go tool pprof -top %s\n", filepath.Join(dir, "{cpu,block,mutex}-"+tag+".pprof"))
}

// envoyAdmin is the admin address of the scenario's Envoy; empty when it has none.
func envoyAdmin(name string) string {
	switch name {
	case "envoy":
		return fmt.Sprintf("127.0.0.1:%d", envoyAlonePort+900)
	case "envoy-fhirwall":
		return fmt.Sprintf("127.0.0.1:%d", envoyFhirwallPort+900)
	case "peer":
		return fmt.Sprintf("127.0.0.1:%d", envoyPeerPort+900)
	}
	return ""
}

// saveStats keeps, after each attack (tag), Envoy's stats (ext_authz and ext_proc timings, each cluster's
// pending, overflow and upstream_rq_time; counters and histograms are cumulative since start) and
// fhirwall-proxy's metrics (decision and request histograms).
func saveStats(dir string, sc scenario, tag string, fhirwall bool) {
	if a := envoyAdmin(sc.name); a != "" {
		saveURL(filepath.Join(dir, "envoy-stats-"+tag+".txt"), "http://"+a+"/stats?usedonly")
	}
	if fhirwall {
		saveURL(filepath.Join(dir, "proxy-metrics-"+tag+".txt"), "http://"+proxyAdminAddr+"/metrics")
	}
}

func saveURL(path, url string) {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "save", url+":", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}
