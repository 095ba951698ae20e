package um_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
)

const shippedRules = "../../../config/prior-auth-rules.yaml"

func item(seq int, system, code string) um.Item {
	return um.Item{Sequence: seq, Codes: []um.Code{{System: system, Code: code}}}
}

func decideOne(t *testing.T, r *um.Rules, it um.Item) um.ItemResult {
	t.Helper()
	got := r.Decide(context.Background(), um.Request{ID: "r1", Items: []um.Item{it}})
	if len(got) != 1 || got[0].Sequence != it.Sequence {
		t.Fatalf("Decide = %+v, want one result for item %d", got, it.Sequence)
	}
	return got[0]
}

func mustParse(t *testing.T, y string) *um.Rules {
	t.Helper()
	r, err := um.ParseRules([]byte(y))
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	return r
}

// The e2e suites rely on these verdicts of the shipped defaults.
func TestShippedRulesDecideTheDefaultItems(t *testing.T) {
	r, err := um.LoadRules(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		system, code string
		verdict      um.Verdict
		rule         string
		drug         bool
	}{
		{um.SystemCPT, "70551", um.Approved, "mri-brain", false},
		{um.SystemHCPCS, "70551", um.Approved, "mri-brain", false},
		{um.SystemCPT, "70553", um.Approved, "mri-brain", false},
		{um.SystemCPT, "70552", um.NotRequired, "", false},
		{um.SystemHCPCS, "G0154", um.Approved, "home-health-nursing", false},
		{um.SystemHCPCS, "B4185", um.Denied, "parenteral-nutrition-nos", false},
		{um.SystemHCPCS, "b4185 ", um.Denied, "parenteral-nutrition-nos", false},
		{um.SystemCPT, "33510", um.Pended, "cabg", false},
		{um.SystemHCPCS, "33510", um.Pended, "cabg", false},
		{um.SystemHCPCS, "B4184", um.Pended, "parenteral-nutrition", false},
		{um.SystemCPT, "81162", um.Referred, "genetic-testing", false},
		{um.SystemNDC, "0002-8215-01", um.Approved, "drugs-ndc", true},
		{um.SystemNDC, "00169413212", um.Approved, "drugs-ndc", true},
		{um.SystemHCPCS, "J1745", um.Approved, "drugs-hcpcs-j", true},
		{um.SystemHCPCS, "99212", um.NotRequired, "", false},
		{"https://codesystem.x12.org/005010/1365", "3", um.NotRequired, "", false},
	} {
		got := decideOne(t, r, item(1, tc.system, tc.code))
		if got.Verdict != tc.verdict || got.Rule != tc.rule || got.Drug != tc.drug {
			t.Errorf("%s|%s: got %s by %q drug=%v, want %s by %q drug=%v", tc.system, tc.code,
				got.Verdict, got.Rule, got.Drug, tc.verdict, tc.rule, tc.drug)
		}
		if (got.Verdict == um.Denied) != (got.Reason != nil) {
			t.Errorf("%s|%s: %s with reason %+v: a denial, and only a denial, carries a reason", tc.system, tc.code, got.Verdict, got.Reason)
		}
		if got.Reason != nil && (got.Reason.System != um.SystemDecisionReason || got.Reason.Code == "" || got.Reason.Display == "") {
			t.Errorf("%s|%s: reason %+v, want an X12 886 code with a display", tc.system, tc.code, got.Reason)
		}
	}
}

func TestShippedRulesListNoDrugs(t *testing.T) {
	r, err := um.LoadRules(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, l := range r.Listed() {
		codes = append(codes, l.Code)
		if l.System == "" || l.Rule == "" || l.Display == "" {
			t.Errorf("listed %+v: want system, rule and display", l)
		}
	}
	if got, want := strings.Join(codes, " "), "70551 70553 G0154 B4185 33510 B4184 81162"; got != want {
		t.Errorf("listed codes %q, want %q", got, want)
	}
	if l := r.Listed()[0]; l.System != um.SystemCPT || l.Display != "MRI brain without contrast" {
		t.Errorf("first listed %+v, want 70551 under CPT with its own display", l)
	}
}

func TestFirstMatchingRuleDecides(t *testing.T) {
	r := mustParse(t, `
rules:
  - id: exception
    match: {system: cpt, codes: ["70552"]}
    action: pend
  - id: broad
    match: {system: cpt, ranges: ["70540-70559"]}
    action: approve
  - id: never-for-70552
    match: {system: cpt, pattern: '7055[0-9]'}
    action: deny
    reason: {code: X1, display: No}
`)
	for code, want := range map[string]string{"70552": "exception", "70551": "broad", "70540": "broad"} {
		if got := decideOne(t, r, item(1, um.SystemCPT, code)); got.Rule != want {
			t.Errorf("%s decided by %q, want %q", code, got.Rule, want)
		}
	}
	// An item with several codes: the first rule in file order that matches any of them decides, whatever
	// the order of the codes.
	it := um.Item{Sequence: 2, Codes: []um.Code{{System: um.SystemCPT, Code: "70551"}, {System: um.SystemCPT, Code: "70552"}}}
	if got := decideOne(t, r, it); got.Rule != "exception" {
		t.Errorf("two codes decided by %q, want the first rule in file order", got.Rule)
	}
}

func TestRangesMatchCodesOfTheirShapeBetweenTheirEnds(t *testing.T) {
	r := mustParse(t, `
rules:
  - id: mri
    match: {system: cpt, ranges: ["70551-70553", {range: 0001F-0015F, display: Quality}]}
    action: pend
  - id: j
    match: {system: hcpcs, ranges: [J0100-J0200]}
    action: pend
`)
	for _, tc := range []struct {
		system, code string
		in           bool
	}{
		{um.SystemCPT, "70551", true}, {um.SystemCPT, "70552", true}, {um.SystemCPT, "70553", true},
		{um.SystemCPT, "70550", false}, {um.SystemCPT, "70554", false}, {um.SystemCPT, "7055", false},
		{um.SystemCPT, "705520", false}, {um.SystemCPT, "0010F", true}, {um.SystemCPT, "0010T", false},
		{um.SystemCPT, "0016F", false}, {um.SystemHCPCS, "J0150", true}, {um.SystemHCPCS, "K0150", false},
		{um.SystemHCPCS, "J0201", false}, {um.SystemHCPCS, "70552", false},
	} {
		got := decideOne(t, r, item(1, tc.system, tc.code))
		if (got.Verdict == um.Pended) != tc.in {
			t.Errorf("%s|%s: %s, want in range %v", tc.system, tc.code, got.Verdict, tc.in)
		}
	}
}

func TestPatternMustMatchTheWholeCode(t *testing.T) {
	r := mustParse(t, `
rules:
  - id: j
    match: {system: hcpcs, pattern: 'J[0-9]{4}'}
    action: pend
`)
	for code, want := range map[string]um.Verdict{"J1745": um.Pended, "XJ1745": um.NotRequired, "J17450": um.NotRequired, "J174": um.NotRequired} {
		if got := decideOne(t, r, item(1, um.SystemHCPCS, code)); got.Verdict != want {
			t.Errorf("%s: %s, want %s", code, got.Verdict, want)
		}
	}
}

func TestItemNoRuleMatchesNeedsNoPriorAuth(t *testing.T) {
	r := mustParse(t, "rules:\n  - {id: a, match: {system: cpt, codes: ['70551']}, action: pend}\n")
	for _, it := range []um.Item{
		item(1, um.SystemCPT, "99212"),
		item(1, um.SystemHCPCS, "70551"), // the rule names CPT only
		item(1, "http://example.org/other", "70551"),
	} {
		if got := decideOne(t, r, it); got.Verdict != um.NotRequired || got.Rule != "" {
			t.Errorf("%+v: %s by %q, want not-required by no rule", it.Codes, got.Verdict, got.Rule)
		}
	}
}

func TestItemWithoutUsableCodeIsPended(t *testing.T) {
	r, err := um.LoadRules(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	for name, codes := range map[string][]um.Code{
		"no coding":    nil,
		"no system":    {{Code: "70551"}},
		"no code":      {{System: um.SystemCPT}},
		"blank code":   {{System: um.SystemCPT, Code: "  "}},
		"blank system": {{System: " ", Code: "B4185"}},
		"all unusable": {{System: um.SystemCPT}, {Code: "J1745"}},
		"display only": {{Display: "MRI brain"}},
	} {
		got := decideOne(t, r, um.Item{Sequence: 3, Codes: codes})
		if got.Verdict != um.Pended || got.Rule != um.RuleNoCoding {
			t.Errorf("%s: %s by %q, want pended by %q", name, got.Verdict, got.Rule, um.RuleNoCoding)
		}
	}
}

func TestDrugCodesAreDrugsWhateverDecidesThem(t *testing.T) {
	r := mustParse(t, `
rules:
  - {id: ndc-pend, match: {system: ndc, codes: ['0002-8215-01']}, action: pend}
  - {id: flagged, match: {system: cpt, codes: ['99999']}, drug: true, action: pend}
`)
	for _, tc := range []struct {
		it   um.Item
		drug bool
	}{
		{item(1, um.SystemNDC, "0002-8215-01"), true}, // a rule that does not say drug
		{item(1, um.SystemNDC, "12345-678-90"), true}, // no rule at all
		{item(1, um.SystemHCPCS, "J9999"), true},      // no rule at all
		{item(1, um.SystemCPT, "99999"), true},        // the rule says so
		{item(1, um.SystemCPT, "J1745"), false},       // J codes are HCPCS Level II
		{item(1, um.SystemHCPCS, "B4185"), false},
	} {
		if got := decideOne(t, r, tc.it); got.Drug != tc.drug {
			t.Errorf("%+v: drug=%v, want %v", tc.it.Codes, got.Drug, tc.drug)
		}
	}
}

func TestNDCMatchesHoweverItIsHyphenated(t *testing.T) {
	r := mustParse(t, "rules:\n  - {id: n, match: {system: ndc, codes: ['0002-8215-01']}, action: pend}\n")
	for code, want := range map[string]um.Verdict{
		"0002-8215-01": um.Pended, "00002-8215-01": um.Pended, "00002821501": um.Pended,
		"0002821501":   um.NotRequired, // ten digits without hyphens: which segment to pad is unknown
		"0002-8215-02": um.NotRequired, "1-1-1": um.NotRequired,
	} {
		if got := decideOne(t, r, item(1, um.SystemNDC, code)); got.Verdict != want {
			t.Errorf("NDC %s: %s, want %s", code, got.Verdict, want)
		}
	}
}

func TestListedLeavesOutDrugRulesAndKeepsWhatTheFileWrites(t *testing.T) {
	r := mustParse(t, `
rules:
  - id: mri
    description: MRI
    match: {systems: [hcpcs, cpt], codes: ["70551", {code: "70553", display: MRI 2}], ranges: ["70540-70543"]}
    action: pend
  - {id: drug, match: {system: ndc, any: true}, drug: true, action: approve}
  - {id: dme, description: Wheelchairs, match: {system: hcpcs, pattern: 'K0[0-9]{3}'}, action: pend}
  - {id: all-x, description: Every X, match: {system: 'http://example.org/x', any: true}, action: pend}
`)
	want := []um.Listed{
		{System: um.SystemHCPCS, Code: "70551", Display: "MRI", Rule: "mri"},
		{System: um.SystemHCPCS, Code: "70553", Display: "MRI 2", Rule: "mri"},
		{System: um.SystemHCPCS, Code: "70540-70543", Display: "MRI", Rule: "mri"},
		{System: um.SystemHCPCS, Code: "K0[0-9]{3}", Display: "Wheelchairs", Rule: "dme"},
		{System: "http://example.org/x", Code: "*", Display: "Every X", Rule: "all-x"},
	}
	got := r.Listed()
	if len(got) != len(want) {
		t.Fatalf("Listed = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Listed[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseRulesRefusesEachMistake(t *testing.T) {
	const ok = "    match: {system: cpt, codes: ['70551']}\n    action: approve\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"syntax", "rules: [\n", "did not find expected"},
		{"empty file", "", "the file is empty"},
		{"no rules field", "other: 1\n", `unknown field "other"`},
		{"empty rules", "rules: []\n", "no rules"},
		{"rules not a list", "rules: {a: 1}\n", "rules: want a list"},
		{"rule not a mapping", "rules:\n  - just-a-string\n", "rule #1: want a mapping"},
		{"unknown rule field", "rules:\n  - id: a\n    colour: red\n" + ok, `line 3: rule "a": unknown field "colour"`},
		{"unknown match field", "rules:\n  - id: a\n    match: {system: cpt, code: '70551'}\n    action: approve\n", `unknown field "code"`},
		{"field twice", "rules:\n  - id: a\n    id: b\n" + ok, `field "id" given twice`},
		{"missing id", "rules:\n  -\n" + ok, "rule #1: id is missing"},
		{"bad id", "rules:\n  - id: 'a b'\n" + ok, `id "a b"`},
		{"reserved id", "rules:\n  - id: um-unavailable\n" + ok, "reserved"},
		{"duplicate id", "rules:\n  - id: a\n" + ok + "  - id: a\n    match: {system: cpt, codes: ['70552']}\n    action: approve\n", "line 5: rule \"a\": id already used by the rule at line 2"},
		{"missing action", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551']}\n", "action is missing"},
		{"unknown action", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551']}\n    action: aprove\n", `action "aprove"`},
		{"deny without reason", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551']}\n    action: deny\n", "a deny rule needs a reason"},
		{"reason without deny", "rules:\n  - id: a\n" + ok + "    reason: {code: X, display: Y}\n", "a reason belongs only to a deny rule"},
		{"reason of another system", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551']}\n    action: deny\n    reason: {system: 'http://example.org', code: X, display: Y}\n", "from X12 886"},
		{"reason without code", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551']}\n    action: deny\n    reason: {display: Y}\n", "reason: code is missing"},
		{"reason without display", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551']}\n    action: deny\n    reason: {code: X}\n", "display is missing"},
		{"drug not a bool", "rules:\n  - id: a\n    drug: sometimes\n" + ok, "drug: want true or false"},
		{"missing match", "rules:\n  - id: a\n    action: approve\n", "match is missing"},
		{"missing system", "rules:\n  - id: a\n    match: {codes: ['70551']}\n    action: approve\n", "system is missing"},
		{"system and systems", "rules:\n  - id: a\n    match: {system: cpt, systems: [hcpcs], codes: ['70551']}\n    action: approve\n", "not both"},
		{"unknown system", "rules:\n  - id: a\n    match: {system: icd10, codes: ['70551']}\n    action: approve\n", `system "icd10"`},
		{"system twice", "rules:\n  - id: a\n    match: {systems: [cpt, 'http://www.ama-assn.org/go/cpt'], codes: ['70551']}\n    action: approve\n", "given twice"},
		{"nothing to match", "rules:\n  - id: a\n    match: {system: cpt}\n    action: approve\n", "give codes, ranges, a pattern, or any: true"},
		{"any with codes", "rules:\n  - id: a\n    match: {system: ndc, any: true, codes: ['00002821501']}\n    action: approve\n", "drop codes"},
		{"bad cpt code", "rules:\n  - id: a\n    match: {system: cpt, codes: ['7055']}\n    action: approve\n", "not a CPT or HCPCS code"},
		{"range among codes", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551-70553']}\n    action: approve\n", "a range goes under ranges"},
		{"ambiguous ndc", "rules:\n  - id: a\n    match: {system: ndc, codes: ['0002821501']}\n    action: approve\n", "not an NDC"},
		{"code twice", "rules:\n  - id: a\n    match: {system: cpt, codes: ['70551', '70551']}\n    action: approve\n", "given twice"},
		{"empty code", "rules:\n  - id: a\n    match: {system: cpt, codes: [~]}\n    action: approve\n", "empty code"},
		{"range not a range", "rules:\n  - id: a\n    match: {system: cpt, ranges: ['70551']}\n    action: approve\n", "two codes joined by one '-'"},
		{"range of different shapes", "rules:\n  - id: a\n    match: {system: hcpcs, ranges: ['A0001-B0001']}\n    action: approve\n", "same letters in the same places"},
		{"range backwards", "rules:\n  - id: a\n    match: {system: cpt, ranges: ['70553-70551']}\n    action: approve\n", "the first code is after the last"},
		{"bad pattern", "rules:\n  - id: a\n    match: {system: hcpcs, pattern: 'J[0-9'}\n    action: approve\n", "missing closing ]"},
		{"unreachable code", "rules:\n  - id: a\n    match: {system: cpt, ranges: ['70551-70553']}\n    action: approve\n  - id: b\n    match: {system: cpt, codes: ['70552']}\n    action: deny\n    reason: {code: X, display: Y}\n", `rule "b": code 70552 (http://www.ama-assn.org/go/cpt) is decided first by rule "a" at line 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := um.ParseRules([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("ParseRules accepted it (%d listed)", len(r.Listed()))
			}
			if !errors.Is(err, um.ErrInvalidRules) {
				t.Errorf("error %v is not ErrInvalidRules", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestParseRulesReportsEveryProblemAtOnce(t *testing.T) {
	_, err := um.ParseRules([]byte(`
rules:
  - id: a
    match: {system: cpt, codes: ['70551']}
    action: aprove
  - id: b
    match: {system: cpt, codes: ['70552']}
    action: deny
  - id: c
    match: {system: cpt, codes: ['70553']}
    action: pend
    extra: 1
`))
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	for i, want := range []string{`line 5: rule "a": action "aprove"`, `line 6: rule "b": a deny rule needs a reason`, `line 12: rule "c": unknown field "extra"`} {
		if i >= len(lines) || !strings.Contains(lines[i], want) {
			t.Errorf("error line %d: want %q in\n%v", i+1, want, err)
		}
	}
}

func TestLoadRulesNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := um.LoadRules(path)
	if !errors.Is(err, um.ErrInvalidRules) || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("LoadRules error %v, want ErrInvalidRules prefixed with the path", err)
	}
	if _, err := um.LoadRules(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}

func FuzzParseRules(f *testing.F) {
	if b, err := os.ReadFile(shippedRules); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := um.ParseRules(b)
		if err != nil {
			if !errors.Is(err, um.ErrInvalidRules) {
				t.Fatalf("error %v is not ErrInvalidRules", err)
			}
			return
		}
		items := []um.Item{
			item(1, um.SystemCPT, "70551"), item(2, um.SystemHCPCS, "J1745"), item(3, um.SystemNDC, "0002-8215-01"),
			item(4, "http://example.org/x", "a-b"), {Sequence: 5},
		}
		got := r.Decide(context.Background(), um.Request{Items: items})
		for i, res := range got {
			if res.Sequence != items[i].Sequence {
				t.Fatalf("result %d for item %d", res.Sequence, items[i].Sequence)
			}
			if res.Verdict == um.Denied && res.Reason == nil {
				t.Fatalf("item %d denied without a reason", res.Sequence)
			}
		}
		for _, l := range r.Listed() {
			if l.System == "" || l.Code == "" {
				t.Fatalf("listed %+v without system or code", l)
			}
		}
	})
}

func BenchmarkRulesDecide(b *testing.B) {
	r, err := um.LoadRules(shippedRules)
	if err != nil {
		b.Fatal(err)
	}
	req := um.Request{ID: "bench", Items: []um.Item{
		item(1, um.SystemCPT, "70551"), item(2, um.SystemHCPCS, "B4185"), item(3, um.SystemHCPCS, "99212"),
		item(4, um.SystemNDC, "0002-8215-01"), item(5, um.SystemHCPCS, "J1745"),
	}}
	ctx := context.Background()
	for b.Loop() {
		r.Decide(ctx, req)
	}
}
