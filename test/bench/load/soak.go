package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// soakSample is fhirwall-proxy's state at one moment of a soak.
type soakSample struct {
	At         time.Duration `json:"at_ns"`
	RSS        int64         `json:"rss_bytes"`
	Goroutines float64       `json:"goroutines"`
	// GCPauseMax is go_gc_duration_seconds{quantile="1"}: the longest of the recent pauses the Go runtime keeps.
	GCPauseMax float64 `json:"gc_pause_max_seconds"`
	// GCPauses is the cumulative histogram of stop-the-world GC pauses since start
	// (go_sched_pauses_total_gc_seconds): upper bound in seconds → count.
	GCPauses pauseHistogram `json:"-"`
	Requests uint64         `json:"requests"`
	Errors   uint64         `json:"errors"`
	P99      time.Duration  `json:"p99_ns"`
}

// soakResult is what a soak of one scenario measured: answers, errors, and the trend of memory and goroutines
// (least-squares slopes over the samples after the first tenth, so start-up growth does not count).
type soakResult struct {
	Name            string        `json:"name"`
	Rate            int           `json:"rate"`
	Duration        time.Duration `json:"duration_ns"`
	Requests        uint64        `json:"requests"`
	Errors          uint64        `json:"errors"`
	RSSSlopeMBMin   float64       `json:"rss_slope_mb_per_min"`
	GoroutinesSlope float64       `json:"goroutines_slope_per_min"`
	GCPauseMax      float64       `json:"gc_pause_max_seconds"`
	// GCPauseP99 bounds the 99th percentile of the GC pauses during the soak (the runtime's pause histogram,
	// after the warm-up to the last sample): the upper bound of its bucket, or the longest pause seen when that
	// is lower. GCPauses is how many pauses there were.
	GCPauseP99 float64       `json:"gc_pause_p99_seconds"`
	GCPauses   uint64        `json:"gc_pauses"`
	WorstP99   time.Duration `json:"worst_interval_p99_ns"`
	Samples    []soakSample  `json:"samples"`
}

// soakInterval is one attack of the soak: a sample of the proxy is taken after each.
const soakInterval = 10 * time.Second

// soak runs sc at rate for d in soakInterval attacks, sampling fhirwall-proxy (its RSS from /proc, its
// goroutines and GC pauses from its /metrics) after each, and reports errors and the slopes.
func soak(o options, runDir string, sc scenario, token string, paths []string) (soakResult, error) {
	dir := filepath.Join(runDir, sc.name+"-soak")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return soakResult{}, err
	}
	fmt.Printf("\n== soak: %s, %d rps for %s\n", sc.title, o.soakRate, o.soak)
	procs, err := sc.start(dir)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err != nil {
		return soakResult{}, err
	}
	var proxy *proc
	for _, p := range procs {
		if p.name == "fhirwall-proxy" {
			proxy = p
		}
	}
	if proxy == nil {
		return soakResult{}, fmt.Errorf("no fhirwall-proxy among %s: a soak watches fhirwall", names(procs))
	}
	for _, p := range paths {
		if err := check(sc.url+p, token); err != nil {
			return soakResult{}, err
		}
	}
	tr := targeter(sc.url, token, paths)
	// One client for the whole soak, as a steady caller is: its connections carry over from one interval to
	// the next (a new client per interval left the last one's connections idle on the server).
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext}}
	defer client.CloseIdleConnections()
	attackWith(client, tr, 200, 0, 3*time.Second)
	res := soakResult{Name: sc.name, Rate: o.soakRate, Duration: o.soak}
	_, _, pausesBefore := proxyRuntime()
	start := time.Now()
	for time.Since(start) < o.soak {
		m := attackWith(client, tr, o.soakRate, 0, min(soakInterval, o.soak-time.Since(start)))
		s := soakSample{At: time.Since(start), Requests: m.Requests, P99: m.Latencies.P99}
		s.Errors = uint64(float64(m.Requests)*(1-m.Success) + 0.5)
		s.RSS = currentRSS(proxy)
		s.Goroutines, s.GCPauseMax, s.GCPauses = proxyRuntime()
		res.Samples = append(res.Samples, s)
		res.Requests += s.Requests
		res.Errors += s.Errors
		res.WorstP99 = max(res.WorstP99, s.P99)
		res.GCPauseMax = max(res.GCPauseMax, s.GCPauseMax)
		fmt.Printf("  %6s: %6d requests, %d errors, p99 %8s, RSS %4.0f MB, goroutines %4.0f, GC pause max %s\n",
			s.At.Round(time.Second), s.Requests, s.Errors, rd(s.P99), float64(s.RSS)/(1<<20), s.Goroutines,
			time.Duration(s.GCPauseMax*float64(time.Second)).Round(time.Microsecond))
	}
	steady := res.Samples[len(res.Samples)/10:]
	res.RSSSlopeMBMin = slope(steady, func(s soakSample) float64 { return float64(s.RSS) / (1 << 20) })
	res.GoroutinesSlope = slope(steady, func(s soakSample) float64 { return s.Goroutines })
	res.GCPauseP99, res.GCPauses = res.Samples[len(res.Samples)-1].GCPauses.since(pausesBefore).quantile(0.99)
	if res.GCPauseMax > 0 {
		// The exported histogram's buckets are coarse (1 ms to 10 ms is one bucket): no pause exceeded the max.
		res.GCPauseP99 = min(res.GCPauseP99, res.GCPauseMax)
	}
	fmt.Printf("  soak %s: %d requests, %d errors, RSS slope %+.2f MB/min, goroutines slope %+.2f /min, worst 10 s p99 %s, GC pauses %d: p99 ≤ %s, max %s\n",
		sc.name, res.Requests, res.Errors, res.RSSSlopeMBMin, res.GoroutinesSlope, rd(res.WorstP99), res.GCPauses,
		time.Duration(res.GCPauseP99*float64(time.Second)).Round(time.Microsecond),
		time.Duration(res.GCPauseMax*float64(time.Second)).Round(time.Microsecond))
	js, _ := json.MarshalIndent(res, "", "  ")
	return res, os.WriteFile(filepath.Join(dir, "soak.json"), js, 0o600)
}

// slope is the least-squares slope of y over the samples' time, per minute; 0 with fewer than two samples.
func slope(ss []soakSample, y func(soakSample) float64) float64 {
	if len(ss) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range ss {
		x := s.At.Minutes()
		v := y(s)
		sx, sy, sxx, sxy = sx+x, sy+v, sxx+x*x, sxy+x*v
	}
	n := float64(len(ss))
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// currentRSS is the process's resident set now (VmRSS), in bytes; 0 when it cannot be read.
func currentRSS(p *proc) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// proxyRuntime reads go_goroutines, go_gc_duration_seconds{quantile="1"} and the GC pause histogram from
// fhirwall-proxy's /metrics.
func proxyRuntime() (goroutines, gcPauseMax float64, pauses pauseHistogram) {
	resp, err := http.Get("http://" + proxyAdminAddr + "/metrics")
	if err != nil {
		return 0, 0, nil
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			goroutines, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
		if v, ok := strings.CutPrefix(line, `go_gc_duration_seconds{quantile="1"} `); ok {
			gcPauseMax, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
		if v, ok := strings.CutPrefix(line, `go_sched_pauses_total_gc_seconds_bucket{le="`); ok {
			le, n, _ := strings.Cut(v, `"} `)
			bound, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
			count, err2 := strconv.ParseFloat(strings.TrimSpace(n), 64)
			if err1 == nil && err2 == nil {
				if pauses == nil {
					pauses = pauseHistogram{}
				}
				pauses[bound] = uint64(count)
			}
		}
	}
	return goroutines, gcPauseMax, pauses
}

// pauseHistogram is a cumulative Prometheus histogram: bucket upper bound (seconds) → pauses at or below it.
type pauseHistogram map[float64]uint64

// since is h minus an earlier reading of the same histogram: the pauses between the two.
func (h pauseHistogram) since(earlier pauseHistogram) pauseHistogram {
	d := pauseHistogram{}
	for le, n := range h {
		d[le] = n - min(n, earlier[le])
	}
	return d
}

// quantile is the upper bound of the bucket holding the q-quantile pause, and the number of pauses; 0, 0 when
// there were none.
func (h pauseHistogram) quantile(q float64) (float64, uint64) {
	bounds := slices.Sorted(maps.Keys(h))
	if len(bounds) == 0 {
		return 0, 0
	}
	total := h[bounds[len(bounds)-1]]
	if total == 0 {
		return 0, 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	for _, le := range bounds {
		if h[le] >= rank {
			return le, total
		}
	}
	return bounds[len(bounds)-1], total
}
