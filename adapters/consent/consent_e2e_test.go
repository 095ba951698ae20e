//go:build e2e

package consent

import (
	"context"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// go test -tags e2e ./adapters/consent   (the seeded HAPI: bash test/stack/hapi.sh start && go run ./test/seed)
func TestE2EOptedOutAreTheSeededMembers(t *testing.T) {
	evidence.Proves(t, "CMS-PROV-02")
	base := os.Getenv("FHIRWALL_FHIR_URL")
	if base == "" {
		base = "http://127.0.0.1:8090/fhir"
	}
	resp, err := http.Get(base + "/metadata")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HAPI not answering at %s/metadata (%v); start it with `bash test/stack/hapi.sh start` and seed it with `go run ./test/seed`", base, err)
	}
	resp.Body.Close()
	c := New(base, &http.Client{Timeout: 30 * time.Second}, Options{})
	got, err := c.OptedOut(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// test/seed/README.md "Provider Access opt-out"
	if want := []string{"member-05", "member-12", "member-20"}; !slices.Equal(sorted(got), want) {
		t.Errorf("opted out %v, want %v", sorted(got), want)
	}
}
