package audittest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
)

func TestSpoolIsVerifiedByTheKeyItReturnsAndNoOther(t *testing.T) {
	sp, dir, pub := Spool(t)
	r := audit.Record{ID: audit.NewID(), Time: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC), API: "patient-access", Allow: true,
		ClientID: "patient-app", Patients: []string{"member-01"}, Status: 200, Reasons: []string{}, Scopes: []string{"patient/*.rs"},
		DataCategories: []string{"claims"}, Path: "/r/1"}
	if err := sp.Write(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil { // closing before the test ends, as a test that verifies does
		t.Fatal(err)
	}
	rep, err := audit.VerifySpool(dir, audit.Keys{pub})
	if err != nil || rep.Break != nil || rep.Records != 1 {
		t.Fatalf("VerifySpool with the returned key: %v %s; want 1 record, no break", err, rep)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if rep, err := audit.VerifySpool(dir, audit.Keys{other}); err == nil && rep.Break == nil {
		t.Fatalf("another key verified the spool: %s", rep)
	}
}
