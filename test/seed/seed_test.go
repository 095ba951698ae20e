package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/fhirvalidator"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-summary.txt")

func mustGenerate(t *testing.T) []Resource {
	t.Helper()
	rs, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func index(rs []Resource) map[string]Resource {
	m := map[string]Resource{}
	for _, r := range rs {
		m[r.Ref()] = r
	}
	return m
}

func canonicalBundles(t *testing.T, rs []Resource) [][]byte {
	t.Helper()
	var out [][]byte
	for _, b := range Bundles(rs) {
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

func TestDeterministic(t *testing.T) {
	a := canonicalBundles(t, mustGenerate(t))
	b := canonicalBundles(t, mustGenerate(t))
	if len(a) != len(b) {
		t.Fatalf("bundle count differs: %d vs %d", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("bundle %d differs between two runs", i+1)
		}
	}
	for i, data := range a {
		if bytes.Contains(data, []byte("${")) {
			t.Errorf("bundle %d still contains a template placeholder", i+1)
		}
		if bytes.Contains(data, []byte(`"_source"`)) {
			t.Errorf("bundle %d still contains the template _source note", i+1)
		}
	}
}

// summary lists the ids per type (in generation order) and the SHA-256 of every canonical Bundle.
func summary(t *testing.T, rs []Resource) string {
	var sb strings.Builder
	sb.WriteString("# fhirwall seed summary; regenerate with: go test ./test/seed -run TestGolden -update\n")
	byType := map[string][]string{}
	var types []string
	for _, r := range rs {
		if byType[r.Type] == nil {
			types = append(types, r.Type)
		}
		byType[r.Type] = append(byType[r.Type], r.ID)
	}
	sort.Strings(types)
	for _, ty := range types {
		fmt.Fprintf(&sb, "%s %d\n", ty, len(byType[ty]))
		for _, id := range byType[ty] {
			fmt.Fprintf(&sb, "  %s\n", id)
		}
	}
	for i, data := range canonicalBundles(t, rs) {
		fmt.Fprintf(&sb, "bundle %d sha256 %x\n", i+1, sha256.Sum256(data))
	}
	return sb.String()
}

func TestGolden(t *testing.T) {
	got := summary(t, mustGenerate(t))
	path := filepath.Join("testdata", "golden-summary.txt")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("seed output changed; if intended, run: go test ./test/seed -run TestGolden -update\n--- got ---\n%s", got)
	}
}

func TestCountMinimums(t *testing.T) {
	var real []Resource
	for _, r := range mustGenerate(t) {
		if !IsSandbox(r) {
			real = append(real, r)
		}
	}
	c := Counts(real)
	minimum := map[string]int{
		"Patient": 24, "Coverage": 24, "ExplanationOfBenefit": 48 + 2, "Condition": 48, "Observation": 72,
		"Practitioner": 6, "PractitionerRole": 6, "Organization": 4, "Group": 3, "Consent": 3,
	}
	for ty, n := range minimum {
		if c[ty] < n {
			t.Errorf("%s: %d resources, want at least %d", ty, c[ty], n)
		}
	}
	if c["Patient"] != 24 || c["Consent"] != 3 || c["Group"] != 3 || c["Practitioner"] != 6 || c["Organization"] != 4 {
		t.Errorf("fixed populations changed: %v", c)
	}
}

// walkRefs calls fn with the JSON path and value of every "reference" string.
func walkRefs(node any, path string, fn func(path, ref string)) {
	switch n := node.(type) {
	case map[string]any:
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s, ok := n[k].(string); ok && k == "reference" {
				fn(path+"."+k, s)
				continue
			}
			walkRefs(n[k], path+"."+k, fn)
		}
	case []any:
		for i, c := range n {
			walkRefs(c, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

func TestReferencesResolve(t *testing.T) {
	rs := mustGenerate(t)
	idx := index(rs)
	refRe := regexp.MustCompile(`^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$`)
	total := 0
	for _, r := range rs {
		walkRefs(r.Body, r.Ref(), func(path, ref string) {
			total++
			if !refRe.MatchString(ref) {
				t.Errorf("%s: reference %q is not a relative Type/id reference", path, ref)
				return
			}
			target, ok := idx[ref]
			if !ok {
				t.Errorf("%s: reference %q does not resolve inside the seed set", path, ref)
				return
			}
			if target.Tier > r.Tier {
				t.Errorf("%s: %q is loaded in bundle %d, after %s (bundle %d)", path, ref, target.Tier, r.Ref(), r.Tier)
			}
		})
	}
	if total < 500 {
		t.Errorf("only %d references found; the walk is probably broken", total)
	}
}

func TestIDConventions(t *testing.T) {
	rs := mustGenerate(t)
	fhirID := regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	pattern := map[string]*regexp.Regexp{
		"Patient":              regexp.MustCompile(`^member-(0[1-9]|1[0-9]|2[0-4])$`),
		"Coverage":             regexp.MustCompile(`^coverage-member-\d\d$`),
		"ExplanationOfBenefit": regexp.MustCompile(`^(eob|priorauth)-member-\d\d-\d$`),
		"Condition":            regexp.MustCompile(`^condition-member-\d\d-(problem|encounter-dx)$`),
		"Observation":          regexp.MustCompile(`^observation-member-\d\d-(hba1c|bp|hr)$`),
		"Practitioner":         regexp.MustCompile(`^pract-0[1-6]$`),
		"PractitionerRole":     regexp.MustCompile(`^pract-role-0[1-6]$`),
		"Organization":         regexp.MustCompile(`^(org-[abc]|payer-a)$`),
		"Group":                regexp.MustCompile(`^attribution-org-[abc]$`),
		"Consent":              regexp.MustCompile(`^provider-access-opt-out-member-\d\d$`),
	}
	// Sandbox ids name the sandbox, never a member number or a real provider's id.
	sandboxID := regexp.MustCompile(`^([a-z]+-)*sandbox-(01|org|pract|payer)(-[a-z0-9-]+)?$`)
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.Ref()] {
			t.Errorf("duplicate %s", r.Ref())
		}
		seen[r.Ref()] = true
		if !fhirID.MatchString(r.ID) {
			t.Errorf("%s: not a valid FHIR id", r.Ref())
		}
		p, ok := pattern[r.Type]
		if IsSandbox(r) {
			p = sandboxID
		}
		if !ok {
			t.Errorf("%s: unexpected resource type", r.Ref())
		} else if !p.MatchString(r.ID) {
			t.Errorf("%s: id does not follow %s", r.Ref(), p)
		}
		if r.Body["id"] != r.ID || r.Body["resourceType"] != r.Type {
			t.Errorf("%s: body id/resourceType mismatch", r.Ref())
		}
	}
	// The fixed identities of docs/CONVENTIONS-stack.md.
	fixed := []string{"Organization/org-a", "Organization/org-b", "Organization/org-c", "Organization/payer-a",
		"Group/attribution-org-a", "Group/attribution-org-b", "Group/attribution-org-c"}
	for n := 1; n <= 24; n++ {
		fixed = append(fixed, fmt.Sprintf("Patient/member-%02d", n))
	}
	for n := 1; n <= 6; n++ {
		fixed = append(fixed, fmt.Sprintf("Practitioner/pract-%02d", n))
	}
	for _, ref := range fixed {
		if !seen[ref] {
			t.Errorf("missing %s", ref)
		}
	}
}

// get walks a JSON path of map keys and array indexes.
func get(node any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := node.(map[string]any)
			if !ok {
				return nil
			}
			node = m[k]
		case int:
			a, ok := node.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			node = a[k]
		}
	}
	return node
}

func codes(cc any) []string {
	var out []string
	for _, c := range get(cc, "coding").([]any) {
		out = append(out, get(c, "code").(string))
	}
	return out
}

func hasCode(cc any, code string) bool {
	for _, c := range codes(cc) {
		if c == code {
			return true
		}
	}
	return false
}

func TestMemberData(t *testing.T) {
	rs := mustGenerate(t)
	type per struct {
		claims, priorAuths, pre2016, post2016, problem, encdx, lab, vitals, coverages int
		kinds                                                                         map[string]bool
	}
	m := map[string]*per{}
	for n := 1; n <= 24; n++ {
		m["Patient/"+MemberID(n)] = &per{kinds: map[string]bool{}}
	}
	m["Patient/"+SandboxMember] = &per{kinds: map[string]bool{}} // a member like the others, but synthetic
	for _, r := range rs {
		b := r.Body
		switch r.Type {
		case "Coverage":
			p := m[get(b, "beneficiary", "reference").(string)]
			p.coverages++
			if get(b, "subscriber", "reference") != get(b, "beneficiary", "reference") {
				t.Errorf("%s: subscriber != beneficiary", r.Ref())
			}
			if get(b, "payor", 0, "reference") != "Organization/payer-a" {
				t.Errorf("%s: payor is not payer-a", r.Ref())
			}
		case "ExplanationOfBenefit":
			p := m[get(b, "patient", "reference").(string)]
			if get(b, "insurer", "reference") != "Organization/payer-a" {
				t.Errorf("%s: insurer is not payer-a", r.Ref())
			}
			if get(b, "use") == "preauthorization" {
				p.priorAuths++
				continue
			}
			p.claims++
			start := get(b, "billablePeriod", "start").(string)
			if start < "2016-01-01" {
				p.pre2016++
			} else {
				p.post2016++
			}
			kind := codes(get(b, "type"))[0]
			if st := get(b, "subType"); st != nil {
				kind = codes(st)[0]
			}
			p.kinds[kind] = true
			totals := map[string]bool{}
			for _, tot := range get(b, "total").([]any) {
				for _, c := range codes(get(tot, "category")) {
					totals[c] = true
				}
			}
			for _, want := range []string{"submitted", "eligible", "deductible", "copay", "coinsurance", "memberliability", "paidbypatient", "paidtoprovider"} {
				if !totals[want] {
					t.Errorf("%s: total has no %s", r.Ref(), want)
				}
			}
			if get(b, "payment", "amount", "value") == nil {
				t.Errorf("%s: no payment amount", r.Ref())
			}
			if len(get(b, "item", 0, "adjudication").([]any)) == 0 {
				t.Errorf("%s: no item adjudication", r.Ref())
			}
		case "Condition":
			p := m[get(b, "subject", "reference").(string)]
			cat := get(b, "category", 0)
			switch {
			case hasCode(cat, "problem-list-item"):
				p.problem++
			case hasCode(cat, "encounter-diagnosis"):
				p.encdx++
			default:
				t.Errorf("%s: unexpected category %v", r.Ref(), codes(cat))
			}
		case "Observation":
			p := m[get(b, "subject", "reference").(string)]
			cat := get(b, "category", 0)
			if get(cat, "coding", 0, "system") != "http://terminology.hl7.org/CodeSystem/observation-category" {
				t.Errorf("%s: wrong category system", r.Ref())
			}
			switch {
			case hasCode(cat, "laboratory"):
				p.lab++
			case hasCode(cat, "vital-signs"):
				p.vitals++
			}
		}
	}
	allKinds := map[string]bool{}
	for ref, p := range m {
		if p.coverages != 1 || p.claims < 2 || p.claims > 4 || p.pre2016 == 0 || p.post2016 == 0 ||
			p.problem == 0 || p.encdx == 0 || p.lab == 0 || p.vitals < 2 {
			t.Errorf("%s: %+v", ref, *p)
		}
		for k := range p.kinds {
			allKinds[k] = true
		}
	}
	for _, k := range []string{"inpatient", "outpatient", "professional", "pharmacy"} {
		if !allKinds[k] {
			t.Errorf("no %s claim in the seed", k)
		}
	}
}

func TestPriorAuths(t *testing.T) {
	rs := mustGenerate(t)
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Type != "ExplanationOfBenefit" || get(r.Body, "use") != "preauthorization" {
			continue
		}
		drug := get(r.Body, "item", 0, "productOrService", "coding", 0, "system") == "http://hl7.org/fhir/sid/ndc"
		if drug != hasCode(get(r.Body, "type"), "pharmacy") {
			t.Errorf("%s: drug product but not a pharmacy type (or the reverse)", r.Ref())
		}
		action := get(r.Body, "item", 0, "adjudication", 0, "extension", 0, "extension", 1, "valueCodeableConcept", "coding", 0, "code")
		seen[fmt.Sprintf("drug=%v/%v", drug, action)] = true
		if action == "A3" && get(r.Body, "item", 0, "adjudication", 1, "reason") == nil {
			t.Errorf("%s: denied without a reason", r.Ref())
		}
		if (action == "A4") != (get(r.Body, "outcome") == "queued") {
			t.Errorf("%s: pended (A4) must have outcome queued", r.Ref())
		}
	}
	for _, want := range []string{"drug=false/A1", "drug=false/A3", "drug=false/A4", "drug=true/A1", "drug=true/A4"} {
		if !seen[want] {
			t.Errorf("no prior auth %s; have %v", want, seen)
		}
	}
}

func TestAttributionAndOptOut(t *testing.T) {
	rs := mustGenerate(t)
	idx := index(rs)
	groupsOf := map[string]int{}
	optOutMarks := map[string]int{}
	for _, o := range []string{"org-a", "org-b", "org-c"} {
		g, ok := idx["Group/"+GroupID(o)]
		if !ok {
			t.Fatalf("no attribution group for %s", o)
		}
		b := g.Body
		if b["type"] != "person" || b["actual"] != true || get(b, "managingEntity", "reference") != "Organization/"+o {
			t.Errorf("%s: type/actual/managingEntity wrong", g.Ref())
		}
		npi := get(idx["Organization/"+o].Body, "identifier", 0, "value")
		if get(b, "characteristic", 0, "valueReference", "identifier", "value") != npi ||
			get(b, "characteristic", 0, "valueReference", "reference") != "Organization/"+o {
			t.Errorf("%s: characteristic does not name %s / NPI %v", g.Ref(), o, npi)
		}
		members := get(b, "member").([]any)
		if int(b["quantity"].(float64)) != len(members) {
			t.Errorf("%s: quantity %v != %d members", g.Ref(), b["quantity"], len(members))
		}
		for _, mem := range members {
			ref := get(mem, "entity", "reference").(string)
			groupsOf[ref]++
			for _, e := range get(mem, "extension").([]any) {
				if get(e, "url") == OptOutExtensionURL {
					if get(e, "valueBoolean") != true {
						t.Errorf("%s: %s opt-out extension not valueBoolean true", g.Ref(), ref)
					}
					optOutMarks[ref]++
				}
			}
		}
	}
	two := 0
	for n := 1; n <= 24; n++ {
		ref := "Patient/" + MemberID(n)
		switch groupsOf[ref] {
		case 0:
			t.Errorf("%s is in no attribution group", ref)
		case 2:
			two++
		}
		if OptedOut[n] != (optOutMarks[ref] == groupsOf[ref] && groupsOf[ref] > 0) || (!OptedOut[n] && optOutMarks[ref] > 0) {
			t.Errorf("%s: opt-out marks %d in %d groups, opted out %v", ref, optOutMarks[ref], groupsOf[ref], OptedOut[n])
		}
	}
	if two == 0 {
		t.Error("no member is attributed to two organisations")
	}
	wantOpt := []string{"Patient/member-05", "Patient/member-12", "Patient/member-20"}
	var consents []string
	for _, r := range rs {
		if r.Type != "Consent" || IsSandbox(r) { // the sandbox member's opt-in: TestSandboxDataIsTaggedAndSelfContained
			continue
		}
		b := r.Body
		consents = append(consents, get(b, "patient", "reference").(string))
		if b["status"] != "active" || !hasCode(b["scope"], "patient-privacy") || get(b, "provision", "type") != "deny" ||
			get(b, "policy", 0, "uri") != OptOutPolicyURI || !hasCode(b["policyRule"], "OPTOUT") ||
			!hasCode(get(b, "category", 0), "59284-0") {
			t.Errorf("%s: not the documented opt-out shape", r.Ref())
		}
	}
	sort.Strings(consents)
	if strings.Join(consents, ",") != strings.Join(wantOpt, ",") {
		t.Errorf("opt-out consents for %v, want %v", consents, wantOpt)
	}
}

func luhnNPI(npi string) bool {
	if len(npi) != 10 {
		return false
	}
	s := "80840" + npi
	sum := 0
	for i := 0; i < len(s); i++ {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func TestNPIs(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range mustGenerate(t) {
		if r.Type != "Practitioner" && r.Type != "Organization" {
			continue
		}
		for _, id := range get(r.Body, "identifier").([]any) {
			if get(id, "system") != NPISystem {
				continue
			}
			npi := get(id, "value").(string)
			if !luhnNPI(npi) {
				t.Errorf("%s: NPI %s fails the Luhn check", r.Ref(), npi)
			}
			if seen[npi] {
				t.Errorf("%s: NPI %s reused", r.Ref(), npi)
			}
			seen[npi] = true
		}
	}
	if len(seen) != 11 {
		t.Errorf("%d NPIs, want 11 (6 practitioners, 3 provider organisations, the sandbox's practitioner and organisation)", len(seen))
	}
}

func TestFillErrors(t *testing.T) {
	if _, err := fill("practitioner", vars{"ID": "x"}); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Errorf("unbound placeholder not reported: %v", err)
	}
	v := vars{"ID": "x", "NPI": "1", "FAMILY": "f", "GIVEN": "g", "GENDER": "male", "EXTRA": 1}
	if _, err := fill("practitioner", v); err == nil || !strings.Contains(err.Error(), "EXTRA") {
		t.Errorf("unused binding not reported: %v", err)
	}
}

// TestTemplatesMatchIG checks that every profile the seed claims is a StructureDefinition of one of the IG
// packages (test/fixtures/fhir-packages, or $FHIR_PACKAGES) and that every template names an example that
// exists.
func TestTemplatesMatchIG(t *testing.T) {
	dir := fhirvalidator.PackageDir()
	tgzs, _ := filepath.Glob(filepath.Join(dir, "*.tgz"))
	if len(tgzs) == 0 {
		t.Fatalf("no IG packages in %s: the repository carries them in test/fixtures/fhir-packages", dir)
	}
	profiles := map[string]bool{}
	examples := map[string]bool{}
	for _, p := range tgzs {
		pkg := strings.TrimSuffix(filepath.Base(p), ".tgz")
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(gz)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(h.Name, "package/example/"):
				examples[pkg+" "+strings.TrimPrefix(h.Name, "package/")] = true
			case strings.HasPrefix(h.Name, "package/StructureDefinition-") && strings.HasSuffix(h.Name, ".json"):
				var sd struct{ URL string }
				data, _ := io.ReadAll(tr)
				if json.Unmarshal(data, &sd) == nil && sd.URL != "" {
					profiles[sd.URL] = true
				}
			}
		}
		f.Close()
	}
	for _, r := range mustGenerate(t) {
		ps, _ := get(r.Body, "meta", "profile").([]any)
		for _, p := range ps {
			url := strings.SplitN(p.(string), "|", 2)[0]
			if !profiles[url] {
				t.Errorf("%s: profile %s is in none of the IG packages", r.Ref(), url)
			}
		}
	}
	srcRe := regexp.MustCompile(`(hl7\.fhir\.[a-z0-9.\-]+) (example/[A-Za-z0-9.\-]+\.json)`)
	files, _ := templateFS.ReadDir("testdata/templates")
	for _, f := range files {
		data, _ := templateFS.ReadFile("testdata/templates/" + f.Name())
		var doc struct {
			Source string `json:"_source"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		for _, m := range srcRe.FindAllStringSubmatch(doc.Source, -1) {
			if !examples[m[1]+" "+m[2]] {
				t.Errorf("%s: _source names %s %s, not in the packages", f.Name(), m[1], m[2])
			}
		}
	}
}

// TestLoadNamesRejectedEntry: when the server refuses a transaction, the error names the entry.
func TestLoadNamesRejectedEntry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		switch {
		case r.Method == http.MethodPost:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"HAPI-0000: transaction failed"}]}`)
		case r.Method == http.MethodPut && r.URL.Path == "/fhir/Practitioner/pract-03":
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"bad NPI"}]}`)
		default:
			io.WriteString(w, `{}`)
		}
	}))
	defer srv.Close()
	err := Load(t.Context(), newClient(srv.URL+"/fhir", 10*time.Second), mustGenerate(t), t.Logf)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"Practitioner/pract-03", "HTTP 422", "bad NPI", "bundle 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestSandboxDataIsTaggedAndSelfContained: the sandbox APIs return only resources tagged sandbox, so every
// sandbox resource carries the tag, no real one does, and sandbox resources point at no real member or
// provider (an _include would be dropped, a Provider Access sandbox would find nobody).
func TestSandboxDataIsTaggedAndSelfContained(t *testing.T) {
	rs := mustGenerate(t)
	realMember := regexp.MustCompile(`member-\d\d|FWM\d{4}`)
	sandbox := map[string]int{}
	for _, r := range rs {
		if !IsSandbox(r) {
			if strings.Contains(r.ID, "sandbox") {
				t.Errorf("%s: named sandbox, not tagged", r.Ref())
			}
			continue
		}
		sandbox[r.Type]++
		walkRefs(r.Body, r.Ref(), func(path, ref string) {
			if !strings.Contains(ref, "sandbox") && ref != "Organization/"+PayerID {
				t.Errorf("%s: %s is not sandbox data", path, ref)
			}
		})
		if realMember.MatchString(fmt.Sprint(r.Body)) {
			t.Errorf("%s: names a real member", r.Ref())
		}
	}
	want := map[string]int{"Patient": 1, "Coverage": 1, "ExplanationOfBenefit": 3, "Observation": 3, "Condition": 2,
		"Organization": 2, "Practitioner": 1, "PractitionerRole": 1, "Group": 1, "Consent": 1}
	if fmt.Sprint(sandbox) != fmt.Sprint(want) {
		t.Errorf("sandbox resources %v, want %v", sandbox, want)
	}
	// The Payer-to-Payer sandbox: the member opted in to the sandbox payer, in the shape the adapter reads.
	c := index(rs)["Consent/"+SandboxOptIn].Body
	if c["status"] != "active" || get(c, "patient", "reference") != "Patient/"+SandboxMember || get(c, "provision", "type") != "permit" ||
		get(c, "provision", "actor", 1, "reference", "reference") != "Organization/"+SandboxPayer ||
		!hasCode(get(c, "provision", "actor", 1, "role"), "IRCP") || !hasCode(get(c, "provision", "action", 0), "disclose") {
		t.Errorf("sandbox opt-in: %v", c)
	}
	if get(index(rs)["PractitionerRole/"+SandboxPractRole].Body, "organization", "reference") != "Organization/"+SandboxOrg {
		t.Error("the sandbox clinician acts for no sandbox organisation")
	}
	g := index(rs)["Group/"+GroupID(SandboxOrg)]
	if get(g.Body, "managingEntity", "reference") != "Organization/"+SandboxOrg ||
		get(g.Body, "member", 0, "entity", "reference") != "Patient/"+SandboxMember || len(get(g.Body, "member").([]any)) != 1 {
		t.Errorf("sandbox attribution Group: %v", g.Body)
	}
	counted := map[string]bool{}
	for _, ch := range Checks(rs) {
		counted[ch.String()] = true
	}
	both := "_tag=" + SeedTagSystem + "|" + SeedTagCode + "&_tag=" + EnvironmentSystem + "|" + SandboxCode
	for _, c := range []string{"Patient?" + both, "ExplanationOfBenefit?" + both + "&patient=" + SandboxMember, "Consent?" + both,
		"Group?managing-entity=Organization/" + SandboxOrg} {
		if !counted[c] {
			t.Errorf("the seed check does not count %s", c)
		}
	}
}
