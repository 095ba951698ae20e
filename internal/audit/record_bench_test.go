package audit

import "testing"

// BenchmarkRecordEncode is one access record's JSON as the spool writes it (before the chain members).
func BenchmarkRecordEncode(b *testing.B) {
	r := benchRecord(42)
	r.Schema, r.Kind = SchemaVersion, KindAccess
	r.Query = "patient=member-0042&_count=10&_sort=-billable-period"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordEncodeWithPolicy is BenchmarkRecordEncode's record with the policy member Decide adds: a
// Patient Access search's input (about 1 KiB) and verdict.
func BenchmarkRecordEncodeWithPolicy(b *testing.B) {
	r := benchRecord(42)
	r.Schema, r.Kind = SchemaVersion, KindAccess
	r.Query = "patient=member-0042&_count=10&_sort=-billable-period"
	r.Policy = benchPolicy()
	r.Policy.Truncated = false
	b.ReportAllocs()
	var n int
	for b.Loop() {
		line, err := r.encode()
		if err != nil {
			b.Fatal(err)
		}
		n = len(line)
	}
	b.ReportMetric(float64(n), "record-bytes")
}
