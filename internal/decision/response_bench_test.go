package decision

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's CPU time (user and system, the garbage collector's included). Benchmarks here
// also report it per op: on a machine shared with other work the wall time measures the neighbours too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// searchset1000 is a 1,000-entry searchset of EOBs, every other one another patient's.
func searchset1000() []byte {
	entries := make([]entry, 1000)
	for i := range entries {
		p := me
		if i%2 == 1 {
			p = other
		}
		entries[i] = entry{eob(fmt.Sprintf("e%d", i), p), "match"}
	}
	return []byte(bundle("searchset", 1000, []string{"self http://127.0.0.1:8090/fhir/ExplanationOfBenefit?_count=1000",
		"next http://127.0.0.1:8090/fhir?_getpages=bench-uuid&_getpagesoffset=1000&_count=1000&_bundletype=searchset"}, entries...))
}

// BenchmarkEnforceBundle1000 is the cost of filtering a 1,000-entry Bundle (decode, walk, re-encode, page
// binding); compare with BenchmarkDecodeBundle1000, the cost of only decoding it.
func BenchmarkEnforceBundle1000(b *testing.B) {
	body := searchset1000()
	c, d := newEnforcingCore(), decisionFor(me)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		got, err := c.EnforceResponse(context.Background(), d, 200, fhirJSON, body)
		if err != nil || got.Removed != 500 {
			b.Fatal(err, got.Removed)
		}
	}
	reportCPU(b, start)
}

func BenchmarkDecodeBundle1000(b *testing.B) {
	body := searchset1000()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkReadBundle1000 is enforcement's own reader alone (response_json.go), against
// BenchmarkDecodeBundle1000's encoding/json.
func BenchmarkReadBundle1000(b *testing.B) {
	body := searchset1000()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		if _, err := decodeResource(body); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}
