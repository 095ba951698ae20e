package decision

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

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
	for b.Loop() {
		got, err := c.EnforceResponse(context.Background(), d, 200, fhirJSON, body)
		if err != nil || got.Removed != 500 {
			b.Fatal(err, got.Removed)
		}
	}
}

func BenchmarkDecodeBundle1000(b *testing.B) {
	body := searchset1000()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadBundle1000 is enforcement's own reader alone (response_json.go), against
// BenchmarkDecodeBundle1000's encoding/json.
func BenchmarkReadBundle1000(b *testing.B) {
	body := searchset1000()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeResource(body); err != nil {
			b.Fatal(err)
		}
	}
}
