//go:build e2e

package payertopayer_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/fhirvalidator"
)

// The profiles fhirwall's own answers must meet (HRex 1.0.0, PDex 2.1.0); the operations do not ask the
// answers to claim them, so the copy handed to the validator names them in meta.profile.
const (
	hrexMemberMatchOut = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-parameters-member-match-out"
	pdexBulkMatchOut   = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-parameters-multi-member-match-bundle-out"
	pdexMatchGroup     = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-match-group"
	pdexNoMatchGroup   = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-member-no-match-group"
)

// IG package sets. HRex 1.0.0 and PDex 2.1.0 build on US Core 3.1.1 (PDex's prior authorization uses PAS
// 2.0.1 extensions), the clinical types and CARIN BB on US Core 6.1.0: both US Cores define the same
// canonical URLs, so each set is its own validator run (as internal/datascope's validate_e2e_test.go does).
var (
	p2pDavinciPackages = []string{"hl7.fhir.us.core-3.1.1.tgz", "hl7.fhir.us.davinci-hrex-1.0.0.tgz",
		"hl7.fhir.us.davinci-pas-2.0.1.tgz", "hl7.fhir.us.davinci-pdex-2.1.0.tgz"}
	p2pCarinPackages = []string{"hl7.fhir.us.core-6.1.0.tgz", "hl7.fhir.us.carin-bb-2.0.0.tgz",
		"hl7.fhir.us.carin-bb-2.0.0-nonfinancial.tgz"}
)

// offlineTerminology: validator errors caused only by the validator running without a terminology server
// (test/tools/fhir-validator loads no VSAC or THO package). Nothing else may be ignored here: an error from
// fixture content is reported and fixed in testdata, an error from fhirwall's output is a product bug.
var offlineTerminology = []struct{ match, why string }{
	// "The value provided ('F') was not found in the value set 'Birth Sex'
	// (http://hl7.org/fhir/us/core/ValueSet/birthsex|6.1.0) ... (error message = Unknown code 'F' for in-memory
	// expansion ...)": US Core 6.1.0's ValueSet-birthsex.json includes only the VSAC value sets
	// 2.16.840.1.113762.1.4.1 (F, M) and 2.16.840.1.113762.1.4.1021.103 (asked but unknown), which no offline
	// package carries, so the in-memory expansion is empty and no code is ever found in it.
	{"was not found in the value set 'Birth Sex' (http://hl7.org/fhir/us/core/ValueSet/birthsex|6.1.0)",
		"Birth Sex (US Core 6.1.0) is built from VSAC value sets, unavailable without a terminology server"},
}

// emitted is one resource fhirwall sent and where it came from; meta.profile names what it is validated against.
type emitted struct {
	what     string
	resource map[string]any
}

// TestPayerToPayerOutputsValidateAgainstTheirProfiles: everything fhirwall emits on the Payer-to-Payer API,
// through the standalone proxy, validates with HAPI's validator with zero errors: the $member-match answer
// against HRex's member-match-out, the $bulk-member-match result against PDex's multi-member-match-bundle-out
// and each of its Groups against the PDex match or no-match Group, and every resource of the data searches
// and every line of the $davinci-data-export files against the profiles it claims (CARIN BB non-financial
// for the claims fhirwall rewrote, PDex for prior auths, US Core 6.1.0 for clinical types).
func TestPayerToPayerOutputsValidateAgainstTheirProfiles(t *testing.T) {
	evidence.Proves(t, "PDEX-03")
	stackReady(t)
	var base string
	for _, m := range modes {
		if m.name == "standalone" {
			base = m.base
		}
	}
	b := backend(t, "payer-b")
	forgetConsents(t)
	var out []emitted
	claim := func(what string, body []byte, profile string) {
		t.Helper()
		var r map[string]any
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("%s is not JSON: %.300s", what, body)
		}
		out = append(out, emitted{what, withProfile(r, profile)})
	}

	// $member-match (HRex 1.0.0).
	claim("$member-match answer", matchExact(t, base, b).body, hrexMemberMatchOut)

	// The data searches of the matched member.
	for _, path := range []string{
		"/ExplanationOfBenefit?patient=Patient/p2p-exact&_count=50",
		"/Encounter?patient=Patient/p2p-exact&_count=50",
		"/Condition?patient=Patient/p2p-exact&_count=50",
		"/Observation?patient=Patient/p2p-exact&_count=50",
		"/Coverage?patient=Patient/p2p-exact&_count=50",
		"/Patient?identifier=" + url.QueryEscape(memberIDSys+"|P2P-1001"),
	} {
		a := send(t, "GET", base+path, b, nil, nil)
		if a.status != 200 {
			t.Fatalf("data search: %s", a)
		}
		rs := entries(t, a.body)
		if len(rs) == 0 {
			t.Errorf("GET %s: no entries to validate", path)
		}
		for _, r := range rs {
			out = append(out, emitted{fmt.Sprintf("GET %s: %v/%v", path, r["resourceType"], r["id"]), r})
		}
	}

	// $bulk-member-match (PDex 2.1.0): one member of each Group.
	body := bulkMatchIn(
		memberParts(t, "p2p-exact", "p2p-coverage-exact", optIn(payerB)),
		memberParts(t, "p2p-twin-2", "p2p-coverage-twin-2", optIn(payerB)),
		memberParts(t, "p2p-notopted", "p2p-coverage-notopted", optIn(payerC)),
	)
	kick := send(t, "POST", base+"/Group/$bulk-member-match", b, asyncHeaders, body)
	if kick.status != 202 {
		t.Fatalf("$bulk-member-match kick-off: %s", kick)
	}
	done := poll(t, kick.header.Get("Content-Location"), b, 2*time.Minute)
	groups := resultGroups(t, done.body)
	t.Cleanup(func() {
		for _, g := range groups {
			if st, body := hapi(t, "DELETE", "Group/"+fmt.Sprint(g["id"]), nil); st >= 300 {
				t.Errorf("HAPI DELETE Group/%v: %d %.300s", g["id"], st, body)
			}
		}
	})
	claim("$bulk-member-match result", done.body, pdexBulkMatchOut)
	for name, profile := range map[string]string{"ResourceIdentifier": pdexMatchGroup, "NoMatch": pdexNoMatchGroup,
		"ConsentConstraint": pdexNoMatchGroup} {
		g := groups[name]
		if g == nil {
			t.Errorf("no %s Group in the bulk match result: %.500s", name, done.body)
			continue
		}
		claim("$bulk-member-match "+name+" Group", mustJSON(g), profile)
	}

	// $davinci-data-export of the matched Group: every line of every file.
	matched := groups["ResourceIdentifier"]
	if matched == nil {
		t.Fatal("no matched Group to export")
	}
	exportURL := base + "/Group/" + fmt.Sprint(matched["id"]) + "/$davinci-data-export?exportType=" + url.QueryEscape("hl7.fhir.us.davinci-pdex#payertopayer")
	ek := send(t, "GET", exportURL, b, asyncHeaders, nil)
	if ek.status != 202 {
		t.Fatalf("$davinci-data-export kick-off: %s", ek)
	}
	manifest := poll(t, ek.header.Get("Content-Location"), b, 4*time.Minute)
	var man struct{ Output []struct{ Type, URL string } }
	if err := json.Unmarshal(manifest.body, &man); err != nil || len(man.Output) == 0 {
		t.Fatalf("export manifest: %v %s", err, manifest)
	}
	for _, f := range man.Output {
		a := send(t, "GET", f.URL, b, map[string]string{"Accept": "application/fhir+ndjson"}, nil)
		if a.status != 200 {
			t.Fatalf("downloading %s: %s", f.Type, a)
		}
		sc := bufio.NewScanner(bytes.NewReader(a.body))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var r map[string]any
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("%s file line %d is not JSON: %.200s", f.Type, n, line)
			}
			out = append(out, emitted{fmt.Sprintf("export %s file line %d: %v/%v", f.Type, n, r["resourceType"], r["id"]), r})
		}
	}

	validateEmitted(t, out)
}

// withProfile adds profile to r's meta.profile unless r already claims it (with or without a version).
func withProfile(r map[string]any, profile string) map[string]any {
	if profile == "" {
		return r
	}
	meta, _ := r["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		r["meta"] = meta
	}
	ps, _ := meta["profile"].([]any)
	for _, p := range ps {
		if s, _ := p.(string); strings.Split(s, "|")[0] == profile {
			return r
		}
	}
	meta["profile"] = append(ps, profile)
	return r
}

// validateEmitted writes each resource to a file, sorts the files into the package set their profiles come
// from, runs the validator once per set and fails t on every error that the offline terminology does not
// explain. A resource that claims no profile, or profiles from both sets, is an error itself.
func validateEmitted(t *testing.T, out []emitted) {
	t.Helper()
	dir := t.TempDir()
	sets := map[string][]string{} // "davinci" | "carin" → files
	about := map[string]string{}  // file name → what, profiles
	for i, e := range out {
		var profiles []string
		if meta, _ := e.resource["meta"].(map[string]any); meta != nil {
			ps, _ := meta["profile"].([]any)
			for _, p := range ps {
				profiles = append(profiles, fmt.Sprint(p))
			}
		}
		if len(profiles) == 0 {
			// Nothing claimed, nothing but base R4 to check: that is not "validates against the IGs". When the
			// stored resource (members.json) claimed a profile, the copy is validated against it too, so the
			// report says what keeps fhirwall's output from conforming.
			source := sourceProfiles(e.resource)
			t.Errorf("%s claims no profile in meta.profile; the stored resource claims %v", e.what, source)
			if len(source) == 0 {
				continue
			}
			e.what += " (validated against the stored resource's profiles)"
			for _, p := range source {
				withProfile(e.resource, p)
			}
			profiles = source
		}
		set := ""
		for _, p := range profiles {
			s := "carin"
			if strings.Contains(p, "/davinci-") {
				s = "davinci"
			}
			if set != "" && s != set {
				t.Errorf("%s claims profiles built on both US Core 3.1.1 and 6.1.0 (%v): no single validator run holds both", e.what, profiles)
			}
			set = s
		}
		name := fmt.Sprintf("%03d-%v-%v.json", i, e.resource["resourceType"], e.resource["id"])
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, mustJSON(e.resource), 0o600); err != nil {
			t.Fatal(err)
		}
		sets[set] = append(sets[set], f)
		about[name] = fmt.Sprintf("%s %v", e.what, profiles)
	}
	for _, s := range []struct {
		name     string
		packages []string
	}{{"davinci", p2pDavinciPackages}, {"carin", p2pCarinPackages}} {
		if len(sets[s.name]) == 0 {
			continue
		}
		t.Logf("validating %d resources with %v", len(sets[s.name]), s.packages)
		for _, line := range fhirvalidator.Validate(t, fhirvalidator.Packages(t, s.packages...), sets[s.name]) {
			what := ""
			if f := strings.Fields(line); len(f) > 1 {
				what = about[f[1]]
			}
			if why := offlineOnly(line); why != "" {
				t.Logf("ignored (%s): %s", why, line)
				continue
			}
			t.Errorf("%s\n    %s", what, line)
		}
	}
}

// sourceProfiles are the profiles the fixture fhirwall read from (members.json) claims.
func sourceProfiles(r map[string]any) []string {
	var out []string
	if meta, _ := fixtures[fmt.Sprintf("%v/%v", r["resourceType"], r["id"])]["meta"].(map[string]any); meta != nil {
		ps, _ := meta["profile"].([]any)
		for _, p := range ps {
			out = append(out, fmt.Sprint(p))
		}
	}
	return out
}

func offlineOnly(line string) string {
	for _, o := range offlineTerminology {
		if strings.Contains(line, o.match) {
			return o.why
		}
	}
	return ""
}
