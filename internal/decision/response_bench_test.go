package decision

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/datascope"
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

// searchPage is the load harness's upstream answer (test/bench/load roles.go, eobBundle(5), copied: that is
// package main): a searchset of five of member-01's CARIN BB ExplanationOfBenefits, about 6 KB.
func searchPage() []byte {
	const n = 5
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":` + strconv.Itoa(n) + `,"link":[{"relation":"self","url":"http://127.0.0.1/fhir/ExplanationOfBenefit?patient=member-01"}],"entry":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"http://127.0.0.1/fhir/ExplanationOfBenefit/eob-%d","resource":{"resourceType":"ExplanationOfBenefit","id":"eob-%d",`+
			`"meta":{"profile":["http://hl7.org/fhir/us/carin-bb/StructureDefinition/C4BB-ExplanationOfBenefit-Professional-NonClinician"]},`+
			`"status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},`+
			`"use":"claim","patient":{"reference":"Patient/member-01"},"billablePeriod":{"start":"2024-0%d-01"},"created":"2024-0%d-15T00:00:00Z",`+
			`"insurer":{"reference":"Organization/payer"},"provider":{"reference":"Organization/clinic"},"outcome":"complete",`+
			`"insurance":[{"focal":true,"coverage":{"reference":"Coverage/cov-member-01"}}],`+
			`"item":[{"sequence":1,"productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99213"}]},"servicedDate":"2024-0%d-01",`+
			`"adjudication":[{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"submitted"}]},"amount":{"value":120.0,"currency":"USD"}},`+
			`{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"benefit"}]},"amount":{"value":96.0,"currency":"USD"}}]}],`+
			`"total":[{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"submitted"}]},"amount":{"value":120.0,"currency":"USD"}}],`+
			`"payment":{"amount":{"value":96.0,"currency":"USD"}}},"search":{"mode":"match"}}`, i, i, i%9+1, i%9+1, i%9+1)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

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
