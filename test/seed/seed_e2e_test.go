//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"
)

// go test -tags e2e ./test/seed   (HAPI at FHIRWALL_FHIR_URL, default http://127.0.0.1:8090/fhir;
// start it with `bash test/stack/hapi.sh start`).
func TestE2ELoadIntoHAPI(t *testing.T) {
	base := os.Getenv("FHIRWALL_FHIR_URL")
	if base == "" {
		base = "http://127.0.0.1:8090/fhir"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := newClient(base, 2*time.Minute)
	if st, _, err := c.do(ctx, http.MethodGet, "metadata", nil); err != nil || st != http.StatusOK {
		t.Fatalf("HAPI not answering at %s/metadata (status %d, %v); start it with: bash test/stack/hapi.sh start", base, st, err)
	}
	rs, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	logf := func(f string, a ...any) { t.Logf(f, a...) }
	if err := Load(ctx, c, rs, logf); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, c, rs, logf); err != nil {
		t.Fatal(err)
	}

	// The numbers other tests rely on (README.md): member-01 has 3 claims + 2 prior auths,
	// member-02 has 4 claims + 2 prior auths.
	for id, want := range map[string]int{"member-01": 5, "member-02": 6, "member-03": 3} {
		got, err := c.Count(ctx, "ExplanationOfBenefit", url.Values{"patient": {id}})
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("ExplanationOfBenefit?patient=%s: %d, want %d", id, got, want)
		}
	}
	// R4 has no EOB `use` search parameter; prior auths are found by id.
	got, err := c.Count(ctx, "ExplanationOfBenefit", url.Values{"_id": {"priorauth-member-01-1,priorauth-member-01-2"}, "patient": {"member-01"}})
	if err != nil || got != 2 {
		t.Errorf("ExplanationOfBenefit?_id=priorauth-member-01-1,priorauth-member-01-2&patient=member-01: %d, %v; want 2", got, err)
	}

	// Idempotent: a second load leaves every version as it was.
	version := func(ref string) string {
		st, body, err := c.do(ctx, http.MethodGet, ref, nil)
		if err != nil || st != http.StatusOK {
			t.Fatalf("GET %s: %d %v", ref, st, err)
		}
		var r struct {
			Meta struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r.Meta.VersionID
	}
	refs := []string{"Patient/member-01", "ExplanationOfBenefit/eob-member-01-1", "Group/attribution-org-b", "Consent/provider-access-opt-out-member-05"}
	before := map[string]string{}
	for _, ref := range refs {
		before[ref] = version(ref)
	}
	if err := Load(ctx, c, rs, logf); err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		if v := version(ref); v != before[ref] {
			t.Errorf("%s: version %s after reload, was %s (PUT of identical content should not create a version)", ref, v, before[ref])
		}
	}

	// The opt-out marks are searchable the way the consent adapter will look for them.
	got, err = c.Count(ctx, "Consent", url.Values{"patient": {"member-12"}, "status": {"active"}, "scope": {"patient-privacy"}})
	if err != nil || got != 1 {
		t.Errorf("Consent?patient=member-12&status=active&scope=patient-privacy: %d, %v; want 1", got, err)
	}
	got, err = c.Count(ctx, "Group", url.Values{"managing-entity": {"Organization/org-a"}, "type": {"person"}})
	if err != nil || got != 1 {
		t.Errorf("Group?managing-entity=Organization/org-a: %d, %v; want 1", got, err)
	}
}
