package audit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchRecord is one patient-access read of an ExplanationOfBenefit as the decision core records it: the size
// and shape of the commonest line in the log.
func benchRecord(i int) Record {
	patient := fmt.Sprintf("member-%04d", i%1000)
	return Record{
		ID: NewID(), Time: time.Now().UTC(), API: "patient-access", DecisionID: NewID(),
		Allow: true, Reasons: []string{}, PolicyRevision: "sha256:3f1c9a0e5b7d2c48",
		ClientID: "patient-app", Subject: "5f0c2d7e-3b8a-4e61-9a2f-1d6c8b7e4a90", FHIRUser: "Patient/" + patient,
		TokenJTI: NewID(), Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/Coverage.rs"},
		Patients: []string{patient}, ResourceType: "ExplanationOfBenefit", Interaction: "read", Method: "GET",
		Path: fmt.Sprintf("/fhir/ExplanationOfBenefit/eob-%s-%d", patient, i%20), SourceIP: "203.0.113.24",
		RequestID: NewID(), Status: 200, DataCategories: []string{"claims"}, UpstreamMillis: 11.482, Bytes: 4817,
	}
}

func benchSpool(b *testing.B) *Spool {
	b.Helper()
	s, err := Open(b.TempDir(), Options{Key: testKey()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSpoolWrite is one writer alone: every Write is its own commit, so ns/op is the latency of one
// durable write — seal, append, fsync, head update — and mostly the disk's fsync.
func BenchmarkSpoolWrite(b *testing.B) {
	s := benchSpool(b)
	ctx := context.Background()
	start := s.Stats()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := s.Write(ctx, benchRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	end := s.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	// Checkpoints (one per 1,000 records) are included: they are part of what each record costs on disk.
	b.ReportMetric(float64(end.Bytes-start.Bytes)/float64(b.N), "disk-B/record")
}

// BenchmarkSpoolWriteParallel is many requests at once (16 per core): they share commits, so records/s is
// the group-commit throughput and ns/op is wall time per record, not one writer's latency.
func BenchmarkSpoolWriteParallel(b *testing.B) {
	s := benchSpool(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if err := s.Write(ctx, benchRecord(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
