package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
)

func TestRequirementTableIsValid(t *testing.T) {
	reqs, err := parseRequirements(requirementsYAML)
	if err != nil {
		t.Fatalf("embedded requirements.yaml: %v", err)
	}
	for _, id := range []string{"OPS-MON-01", "OPS-TRACE-01", "OPS-REPLAY-01", "OPS-SELFTEST-01", "AUD-01", "AUD-02"} {
		if _, ok := Lookup(id); !ok {
			t.Errorf("product requirement %s is missing from the table (other helpers rely on it)", id)
		}
	}
	if len(Requirements()) != len(reqs) {
		t.Fatalf("Requirements() has %d rows, the file %d", len(Requirements()), len(reqs))
	}
}

func TestParseRequirementsRefusesBadTables(t *testing.T) {
	for name, src := range map[string]string{
		"duplicate id":  "- {id: A-01, title: t, source: s, text: x}\n- {id: A-01, title: t, source: s, text: x}\n",
		"missing title": "- {id: A-01, source: s, text: x}\n",
		"lower-case id": "- {id: a-01, title: t, source: s, text: x}\n",
		"unknown api":   "- {id: A-01, title: t, source: s, text: x, apis: [patient-acess]}\n",
		"unknown field": "- {id: A-01, title: t, source: s, text: x, sauce: y}\n",
		"empty":         "[]\n",
	} {
		if _, err := parseRequirements([]byte(src)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// fakeT records what Proves does to a test.
type fakeT struct {
	logs  []string
	fatal string
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Log(args ...any)                { f.logs = append(f.logs, fmt.Sprint(args...)) }
func (f *fakeT) Fatalf(format string, a ...any) { f.fatal = fmt.Sprintf(format, a...) }

func TestProvesLogsOneLineTheBuilderReads(t *testing.T) {
	f := &fakeT{}
	Proves(f, "AUD-01", "AUD-02")
	if f.fatal != "" || len(f.logs) != 1 || f.logs[0] != "evidence: proves AUD-01,AUD-02" {
		t.Fatalf("logs %q fatal %q", f.logs, f.fatal)
	}
	ids, ok := ParseProvesLine("    audit_test.go:12: " + f.logs[0] + "\n")
	if !ok || strings.Join(ids, ",") != "AUD-01,AUD-02" {
		t.Fatalf("ParseProvesLine = %v %v", ids, ok)
	}
}

func TestProvesFailsTheTestOnAnUnknownID(t *testing.T) {
	for _, ids := range [][]string{{"AUD-99"}, {"AUD-01", "NOPE-1"}, nil} {
		f := &fakeT{}
		Proves(f, ids...)
		if f.fatal == "" || len(f.logs) != 0 {
			t.Errorf("Proves(%v): fatal %q logs %q; want a failure and no proves line", ids, f.fatal, f.logs)
		}
	}
}

func TestParseProvesLineIgnoresOtherLines(t *testing.T) {
	for _, line := range []string{"=== RUN   TestX\n", "evidence: proves \n", "evidence: proves a b\n", "x.go:1: evidence: proves AUD-01,\n"} {
		if ids, ok := ParseProvesLine(line); ok {
			t.Errorf("%q parsed as %v", line, ids)
		}
	}
}

var testReqs = []Requirement{
	{ID: "R-01", Title: "one", Source: "s", Text: "t"},
	{ID: "R-02", Title: "two", Source: "s", Text: "t"},
	{ID: "R-03", Title: "three", Source: "s", Text: "t"},
	{ID: "R-04", Title: "four", Source: "s", Text: "t"},
	{ID: "R-05", Title: "five", Source: "s", Text: "t"},
}

func TestBuildStatuses(t *testing.T) {
	checks := []Check{
		{Name: "pass-1", Requirements: []string{"R-01", "R-02", "R-99"}, Outcome: Pass},
		{Name: "fail-2", Requirements: []string{"R-02"}, Outcome: Fail, Detail: "boom"},
		{Name: "skip-3", Requirements: []string{"R-03"}, Outcome: Skip, Detail: "no tool"},
		{Name: "skip-5", Requirements: []string{"R-05"}, Outcome: Skip},
		{Name: "pass-5", Requirements: []string{"R-05", "R-05"}, Outcome: Pass},
	}
	m := Build("T", "S", testReqs, checks, map[string]string{"go": "go1"}, time.Unix(0, 0))
	want := map[string]Status{"R-01": Met, "R-02": Failed, "R-03": Gap, "R-04": Gap, "R-05": Met}
	if len(m.Rows) != len(testReqs) {
		t.Fatalf("%d rows for %d requirements", len(m.Rows), len(testReqs))
	}
	for i, r := range m.Rows {
		if r.ID != testReqs[i].ID {
			t.Errorf("row %d is %s, want %s (reqs' order)", i, r.ID, testReqs[i].ID)
		}
		if r.Status != want[r.ID] {
			t.Errorf("%s: status %s, want %s", r.ID, r.Status, want[r.ID])
		}
	}
	if n := len(m.Rows[4].Checks); n != 2 {
		t.Errorf("R-05 has %d checks, want 2 (a repeated id counts once)", n)
	}
	if c := m.Counts(); c[Met] != 2 || c[Failed] != 1 || c[Gap] != 2 {
		t.Errorf("counts %v", c)
	}
}

const hostile = `<script>alert(1)</script> | *x* [l](javascript:y) & "q"` + "\nrow"

func hostileMatrix() Matrix {
	reqs := []Requirement{{ID: "R-01", Title: hostile, Source: hostile, Text: hostile}}
	checks := []Check{{Name: hostile, Requirements: []string{"R-01"}, Outcome: Fail, Detail: hostile}}
	return Build(hostile, hostile, reqs, checks, map[string]string{hostile: hostile}, time.Unix(0, 0))
}

func TestMarkdownEscapesCellText(t *testing.T) {
	out := string(hostileMatrix().Markdown())
	if !strings.Contains(out, `\<script\>alert(1)\</script\> \| \*x\* \[l\](javascript:y) \& "q" row`) {
		t.Errorf("markdown lacks the escaped text:\n%s", out)
	}
	for _, bad := range []string{"<script>", "[l](javascript", "*x*", "\nrow"} {
		if strings.Contains(out, bad) {
			t.Errorf("markdown contains unescaped %q:\n%s", bad, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "| R-01 ") {
			if cells := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|"); cells != 6 {
				t.Errorf("row has %d cell separators, want 6: %s", cells, line)
			}
			return
		}
	}
	t.Errorf("no row for R-01:\n%s", out)
}

func TestHTMLEscapesEverything(t *testing.T) {
	out := string(hostileMatrix().HTML())
	if strings.Contains(out, "<script>") || strings.Contains(out, `"q"`) {
		t.Fatalf("HTML contains unescaped input:\n%s", out)
	}
	if !strings.Contains(out, "&lt;script&gt;") {
		t.Fatalf("HTML lost the escaped text:\n%s", out)
	}
}

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return ed25519.NewKeyFromSeed(s)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	m := Build("T", "S", testReqs[:2], []Check{{Name: "c", Requirements: []string{"R-01"}, Outcome: Pass}}, map[string]string{"go": "go1"}, time.Unix(1, 0))
	env, err := Sign(m, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(env, []ed25519.PublicKey{testKey(2).Public().(ed25519.PublicKey), testKey(1).Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows[0].Status != Met || got.Rows[1].Status != Gap || !got.Generated.Equal(m.Generated) {
		t.Fatalf("round trip changed the matrix: %+v", got)
	}
}

func TestVerifyRefusesAnyFlippedByte(t *testing.T) {
	m := Build("T", "S", testReqs[:2], []Check{{Name: "c", Requirements: []string{"R-01"}, Outcome: Pass}}, nil, time.Unix(1, 0))
	env, err := Sign(m, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	keys := []ed25519.PublicKey{testKey(1).Public().(ed25519.PublicKey)}
	for i := range env {
		for _, mask := range []byte{0x01, 0x20} {
			bad := append([]byte(nil), env...)
			bad[i] ^= mask
			if _, err := Verify(bad, keys); !errors.Is(err, ErrUnverified) {
				t.Fatalf("byte %d ^ %#x (%q → %q): err %v, want refused", i, mask, env[i], bad[i], err)
			}
		}
	}
	for _, cut := range [][]byte{env[:len(env)-1], append(append([]byte(nil), env...), ' '), append([]byte(" "), env...)} {
		if _, err := Verify(cut, keys); !errors.Is(err, ErrUnverified) {
			t.Errorf("truncated/extended envelope accepted: %v", err)
		}
	}
}

func TestVerifyRefusesAnUnknownKey(t *testing.T) {
	env, err := Sign(Build("T", "S", testReqs, nil, nil, time.Unix(1, 0)), testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range map[string][]ed25519.PublicKey{
		"other key": {testKey(2).Public().(ed25519.PublicKey)},
		"no keys":   nil,
	} {
		if _, err := Verify(env, keys); !errors.Is(err, ErrUnverified) {
			t.Errorf("%s: err %v, want refused", name, err)
		}
	}
}

func TestASignatureOverTheBareMatrixDoesNotVerify(t *testing.T) {
	// The audit key signs checkpoints and heads too: only a statement with the evidence label verifies here.
	key := testKey(1)
	mb, err := json.Marshal(Build("T", "S", testReqs[:1], nil, nil, time.Unix(1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	env := encodeEnvelope(mb, keyID(pub), base64.StdEncoding.EncodeToString(ed25519.Sign(key, mb)))
	if _, err := Verify(env, []ed25519.PublicKey{pub}); !errors.Is(err, ErrUnverified) {
		t.Fatalf("a signature without the evidence label verified: %v", err)
	}
}

func TestSignRefusesABadKey(t *testing.T) {
	if _, err := Sign(Matrix{}, ed25519.PrivateKey("short")); err == nil {
		t.Fatal("Sign accepted a 5-byte key")
	}
}

func FuzzVerify(f *testing.F) {
	key := testKey(1)
	env, err := Sign(Build("T", "S", testReqs, nil, nil, time.Unix(1, 0)), key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"matrix":{},"key_id":"","signature":""}`))
	keys := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Verify(b, keys)
		if err == nil && string(b) != string(env) {
			t.Fatalf("accepted an envelope Sign did not write: %q (%v)", b, m.Title)
		}
	})
}

func FuzzParseRequirements(f *testing.F) {
	f.Add(requirementsYAML)
	f.Add([]byte("- {id: A-01, title: t, source: s, text: x}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		reqs, err := parseRequirements(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range reqs {
			if seen[r.ID] || !idPattern.MatchString(r.ID) || r.Title == "" {
				t.Fatalf("accepted an invalid row %+v", r)
			}
			seen[r.ID] = true
		}
	})
}

func FuzzParseProvesLine(f *testing.F) {
	f.Add("    x_test.go:3: evidence: proves AUD-01,AUD-02\n")
	f.Fuzz(func(t *testing.T, line string) {
		ids, ok := ParseProvesLine(line)
		if ok && len(ids) == 0 {
			t.Fatal("ok with no ids")
		}
		for _, id := range ids {
			if !idPattern.MatchString(id) {
				t.Fatalf("returned a malformed id %q", id)
			}
		}
	})
}

func TestKeyIDIsTheAuditKeyID(t *testing.T) {
	for seed := byte(1); seed < 4; seed++ {
		pub := testKey(seed).Public().(ed25519.PublicKey)
		if keyID(pub) != audit.KeyID(pub) {
			t.Fatalf("keyID %s, audit.KeyID %s", keyID(pub), audit.KeyID(pub))
		}
	}
}
