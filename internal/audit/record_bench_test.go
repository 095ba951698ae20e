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
