//go:build e2e

package priorauth

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/fhirvalidator"
)

// PAS 2.0.1 builds on US Core 3.1.1; the PDex 2.0.0 prior authorization on US Core 3.1.1, HRex 1.0.0 and PAS.
var (
	pasPackages  = []string{"hl7.fhir.us.core-3.1.1.tgz", "hl7.fhir.us.davinci-pas-2.0.1.tgz"}
	pdexPackages = []string{"hl7.fhir.us.core-3.1.1.tgz", "hl7.fhir.us.davinci-hrex-1.0.0.tgz", "hl7.fhir.us.davinci-pas-2.0.1.tgz", "hl7.fhir.us.davinci-pdex-2.0.0.tgz"}
)

// TestEmittedBundlesValidateAgainstPAS: the request and inquiry Bundles the tests send, and every response
// Bundle fhirwall builds from them — approved, denied, pended, partial, reviewed, rejected for a business
// error, and the inquiry response — validate against PAS 2.0.1 with HAPI's validator, zero errors. The X12,
// CPT and HCPCS code systems are unknown offline (warnings), as in Inferno's PAS kit.
func TestEmittedBundlesValidateAgainstPAS(t *testing.T) {
	evidence.Proves(t, "PAS-01")
	dir := t.TempDir()
	if keep := os.Getenv("PRIORAUTH_KEEP_DIR"); keep != "" {
		dir = keep // to read what was validated
	}
	var files []string
	write := func(name string, b []byte) {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	g := newRig(t)
	for _, in := range []string{"submit-medical.json", "submit-referral.json", "inquire-medical.json"} {
		write("input-"+strings.TrimSuffix(in, ".json"), input(t, in))
	}
	for _, tc := range []struct {
		name  string
		codes []string
	}{
		{"approved", []string{cpt + "70551"}},
		{"denied", []string{hcpcs + "B4185"}},
		{"pended", []string{cpt + "33510"}},
		{"partial", []string{cpt + "70551", hcpcs + "B4185", cpt + "99213"}},
	} {
		ans := g.submit(t, orgA, input(t, "submit-medical.json", withCodes(tc.codes...), func(c, _ map[string]any) {
			asObj(asList(c["identifier"])[0])["value"] = tc.name
		}))
		write("response-"+tc.name, ans.Body)
	}
	write("response-with-net", g.submit(t, orgA, input(t, "submit-medical.json", withCodes(cpt+"70551", cpt+"70553", cpt+"33510"), func(c, _ map[string]any) {
		asObj(asList(c["identifier"])[0])["value"] = "with-net"
		for _, it := range asList(c["item"]) {
			asObj(it)["net"] = map[string]any{"value": 250, "currency": "USD"}
		}
	})).Body)
	write("response-referral", g.submit(t, orgA, input(t, "submit-referral.json")).Body)
	write("response-rejected", g.submit(t, orgA, input(t, "submit-medical.json", patientWith("FWM9999", "THOMPSON"))).Body)
	pended, _ := g.store.Pended(context.Background())
	r, err := g.a.Review(context.Background(), pended[0].ID, ReviewInput{Reviewer: "dr-review", Verdict: VerdictDenied,
		Reason: &Code{System: SystemX12Reason, Code: "0U", Display: "Not medically necessary"}})
	if err != nil {
		t.Fatal(err)
	}
	write("response-reviewed", r.ResponseBundle)
	write("inquiry-response", g.call(t, orgA, "/Claim/$inquire", input(t, "inquire-medical.json", func(c, _ map[string]any) {
		asObj(asList(c["identifier"])[0])["value"] = "approved"
	})).Body)
	if os.Getenv("PRIORAUTH_KEEP_DIR") != "" {
		t.Skip("files written")
	}
	for _, line := range fhirvalidator.Validate(t, fhirvalidator.Packages(t, pasPackages...), files) {
		t.Error(line)
	}

	// The PDex prior authorizations the other APIs show: those that claim pdex-priorauthorization conform to
	// it, the others to R4.
	var eobs []string
	pdex := 0
	for _, eob := range g.fhir.of("ExplanationOfBenefit") {
		if len(asList(asObj(eob["meta"])["profile"])) > 0 {
			pdex++
		}
		b, _ := json.Marshal(eob)
		p := filepath.Join(dir, "eob-"+asStr(eob["id"])+"-"+asStr(eob["outcome"])+".json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		eobs = append(eobs, p)
	}
	if pdex == 0 {
		t.Fatal("no prior authorization claims pdex-priorauthorization")
	}
	for _, line := range fhirvalidator.Validate(t, fhirvalidator.Packages(t, pdexPackages...), eobs) {
		t.Error("PDex: " + line)
	}
}
