package decision

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/datascope"

	"github.com/fhirwall/fhirwall/test/bench/benchdata"
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

// searchPage is the load harness's upstream answer (test/bench/benchdata): five of member-01's EOBs, ~7 KB.
func searchPage() []byte { return []byte(benchdata.EOBSearchPage(5)) }

// searchPageDecision is the harness's request: member-01's app searching its EOBs on the patient access API
// (compartment, the patient-access data scope; the self link is the client's own, so the page is re-encoded).
func searchPageDecision() *Decision {
	d := decisionFor(me)
	d.Input.Path, d.Input.RawQuery = "/ExplanationOfBenefit", "patient=member-01"
	d.Policy.Obligations.DataScope = datascope.PatientAccess
	d.Time = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	return d
}

// BenchmarkEnforceSearchPage is the per-request cost of enforcement on the load harness's answer.
func BenchmarkEnforceSearchPage(b *testing.B) {
	body := searchPage()
	c, d := newEnforcingCore(), searchPageDecision()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		got, err := c.EnforceResponse(context.Background(), d, 200, fhirJSON, body)
		if err != nil || got.Status != 200 || got.Removed != 0 {
			b.Fatal(err, got.Status, got.Removed)
		}
	}
	reportCPU(b, start)
}
