package datascope_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// What decision.Core.EnforceResponse sends for member-01's seed EOBs under each API's data scope.
func enforce(t *testing.T, scope string, body []byte) decision.Enforced {
	t.Helper()
	c := &decision.Core{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	d := &decision.Decision{ID: "d1", Allow: true, Time: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC),
		Identity: &token.Identity{ClientID: "c"}}
	d.Policy.Obligations.Compartment = &policy.Compartment{Patients: []string{"member-01", "member-02"}}
	d.Policy.Obligations.ResourceTypes = map[string]policy.Constraints{"*": {}}
	d.Policy.Obligations.PublicTypes = []string{"Practitioner"}
	d.Policy.Obligations.DataScope = scope
	out, err := c.EnforceResponse(context.Background(), d, 200, "application/fhir+json", body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func searchset(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/seed-eobs.json")
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	b["type"], b["total"] = "searchset", len(b["entry"].([]any))
	out, _ := json.Marshal(b)
	return out
}

func TestProviderAccessSearchLosesOldClaimsDrugPriorAuthsAndMoney(t *testing.T) {
	out := enforce(t, datascope.ProviderAccess, searchset(t))
	var b struct {
		Total *int `json:"total"`
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(out.Body, &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range b.Entry {
		got = append(got, e.Resource["id"].(string))
		// Claims lose every amount; prior auths keep only submitted and eligible (neither cost-sharing nor
		// remittance) and their decision (reviewAction).
		if paths := datascope.LeakedMoney(e.Resource); len(paths) > 0 {
			t.Errorf("%s still carries money at %v", e.Resource["id"], paths)
		}
		if e.Resource["use"] == "claim" && (e.Resource["total"] != nil || strings.Contains(mustJSON(t, e.Resource), `"currency"`)) {
			t.Errorf("%s still carries money", e.Resource["id"])
		}
	}
	// member-03…05's prior auths are outside the compartment; -04-1 is also before 2016.
	want := []string{"eob-member-01-2", "eob-member-01-3", "eob-member-02-2", "eob-member-02-3", "eob-member-02-4",
		"priorauth-member-01-1", "priorauth-member-02-1", "priorauth-member-02-2"}
	if !slices.Equal(got, want) {
		t.Errorf("entries = %v, want %v", got, want)
	}
	if b.Total != nil {
		t.Errorf("total = %d left on a filtered Bundle", *b.Total)
	}
}

func TestProviderAccessReadOfWithheldClaimIsNotFound(t *testing.T) {
	for _, id := range []string{"eob-member-01-1", "priorauth-member-01-2"} {
		out := enforce(t, datascope.ProviderAccess, resource(t, id))
		if out.Status != outcome.NotFound.Status || string(out.Body) != string(outcome.NotFound.Body()) {
			t.Errorf("%s: %d %s, want fhirwall's 404", id, out.Status, out.Body)
		}
	}
	out := enforce(t, datascope.ProviderAccess, resource(t, "eob-member-01-2"))
	if out.Status != 200 || strings.Contains(string(out.Body), `"currency"`) ||
		!strings.Contains(string(out.Body), datascope.ProfessionalNonClinician) {
		t.Errorf("eob-member-01-2: %d %s", out.Status, out.Body)
	}
}

func TestPatientAccessBodyLeavesUnchanged(t *testing.T) {
	for _, id := range []string{"eob-member-01-1", "eob-member-01-2", "priorauth-member-01-1"} {
		body := resource(t, id)
		if out := enforce(t, datascope.PatientAccess, body); string(out.Body) != string(body) {
			t.Errorf("%s changed under patient-access", id)
		}
	}
}

func resource(t *testing.T, id string) []byte {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	raw, _ := os.ReadFile("testdata/seed-eobs.json")
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Entry {
		if strings.Contains(string(e.Resource), `"id": "`+id+`"`) {
			return e.Resource
		}
	}
	t.Fatalf("%s not in testdata", id)
	return nil
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
