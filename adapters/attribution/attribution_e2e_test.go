//go:build e2e

package attribution

import (
	"context"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// fhirBase is the seeded HAPI of the test stack: bash test/stack/hapi.sh start && go run ./test/seed.
func fhirBase(t *testing.T) string {
	t.Helper()
	base := os.Getenv("FHIRWALL_FHIR_URL")
	if base == "" {
		base = "http://127.0.0.1:8090/fhir"
	}
	resp, err := http.Get(base + "/metadata")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HAPI not answering at %s/metadata (%v); start it with `bash test/stack/hapi.sh start` and seed it with `go run ./test/seed`", base, err)
	}
	resp.Body.Close()
	return base
}

// go test -tags e2e ./adapters/attribution
func TestE2EAttributionOfTheSeededProviders(t *testing.T) {
	evidence.Proves(t, "PDEX-04", "CMS-PROV-01")
	c := New(fhirBase(t), &http.Client{Timeout: 30 * time.Second}, Options{})
	cases := []struct {
		provider, group string
		patients        []string
	}{
		// test/seed/README.md "Attribution Groups"
		{"Organization/org-a", "attribution-org-a", members("01", "04", "07", "10", "12", "13", "16", "19", "22", "24")},
		{"Organization/org-b", "attribution-org-b", members("02", "04", "05", "08", "11", "14", "16", "17", "20", "23")},
		{"Organization/org-c", "attribution-org-c", members("03", "06", "08", "09", "12", "15", "18", "20", "21", "24")},
		// pract-01/02 work at org-a (PractitionerRole); the ATR extension gives pract-01 the even members.
		{"Practitioner/pract-01", "attribution-org-a", members("04", "10", "12", "16", "22", "24")},
		{"Practitioner/pract-02", "attribution-org-a", members("01", "07", "13", "19")},
	}
	for _, tc := range cases {
		t.Run(tc.provider, func(t *testing.T) {
			got, err := c.Attributed(context.Background(), tc.provider)
			if err != nil {
				t.Fatal(err)
			}
			if got.GroupID != tc.group || !slices.Equal(got.Patients, tc.patients) {
				t.Errorf("got %s %v\nwant %s %v", got.GroupID, got.Patients, tc.group, tc.patients)
			}
		})
	}
}
