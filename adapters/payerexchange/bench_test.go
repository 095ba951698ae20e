package payerexchange

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkBulkMemberMatch10000 is one $bulk-member-match of 10,000 members, from the kick-off to the status
// URL's result, against the in-memory fake FHIR server (the adapter's own cost: parsing, matching, Consents
// and Groups; the FHIR server's is not in it). It reports the heap the job's answer needed.
func BenchmarkBulkMemberMatch10000(b *testing.B) {
	const n = 10000
	var res []map[string]any
	var members [][]any
	for i := range n {
		number := fmt.Sprintf("B-%05d", i)
		res = append(res, fixtureMember(fmt.Sprintf("m%05d", i), "Family", fmt.Sprintf("Given%d", i), "1970-01-01", "female", number, "")...)
		members = append(members, parts("Family", fmt.Sprintf("Given%d", i), "1970-01-01", "female", number, validConsent()))
	}
	res = append(res, fixtures()...)
	body := bulkBody(members...)
	b.ReportMetric(float64(len(body))/(1<<20), "MiB-request")
	for b.Loop() {
		f := newFakeFHIR(b, res...)
		a, _ := f.adapter(b, now)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// Past fhir.MaxBodyBytes (1 MiB), which the faces enforce today: the adapter's cost alone.
		d := decided(b, "POST", "/Group/$bulk-member-match", "", nil)
		d.Input.Body = body
		start := serve(b, a, d)
		done := waitDone(b, a, start.Header.Get("Content-Location"))
		runtime.ReadMemStats(&after)
		if done.Status != 200 || len(done.Patients) != n {
			b.Fatalf("%d matched %d", done.Status, len(done.Patients))
		}
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "MiB-allocated")
	}
}
