package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

const fakePkg = "github.com/fhirwall/fhirwall/test/tools/evidence/testdata/fakesuite"

func fixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/fakesuite.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checksOf(t *testing.T, stream []byte) map[string]evidence.Check {
	t.Helper()
	r := newResults()
	if err := r.read(bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	out := map[string]evidence.Check{}
	for _, c := range r.checks() {
		out[strings.TrimPrefix(c.Name, fakePkg+".")] = c
	}
	return out
}

func TestRecordedStreamGivesEachTestsClaimAndOutcome(t *testing.T) {
	got := checksOf(t, fixture(t))
	want := map[string]struct {
		ids     string
		outcome evidence.Outcome
		detail  string
	}{
		"TestPasses":            {"AUD-01,CMS-PA-01", evidence.Pass, ""},
		"TestFails":             {"SEC-01", evidence.Fail, "some progress"},
		"TestSkipsAfterProving": {"PAS-01", evidence.Skip, "validator jar missing"},
		"TestParentFailsAfterItsSubtestPassed/member": {"CMS-PROV-01", evidence.Fail, "parent TestParentFailsAfterItsSubtestPassed failed"},
		"TestSubtestsNameTheirOwn":                    {"SMART-01", evidence.Pass, ""},
		"TestSubtestsNameTheirOwn/envoy":              {"SMART-03", evidence.Pass, ""},
		"TestSubtestsNameTheirOwn/standalone":         {"SMART-03", evidence.Pass, ""},
	}
	if len(got) != len(want) {
		t.Errorf("%d checks, want %d: %+v", len(got), len(want), got)
	}
	for name, w := range want {
		c, ok := got[name]
		if !ok {
			t.Errorf("no check for %s", name)
			continue
		}
		if strings.Join(c.Requirements, ",") != w.ids || c.Outcome != w.outcome || !strings.Contains(c.Detail, w.detail) || (w.detail == "" && c.Detail != "") {
			t.Errorf("%s: %v %s %q; want %s %s containing %q", name, c.Requirements, c.Outcome, c.Detail, w.ids, w.outcome, w.detail)
		}
	}
}

// A test binary that dies (timeout, panic) leaves tests without a result: their claims fail.
func TestTestCutOffByACrashIsAFailure(t *testing.T) {
	var cut []byte
	for _, line := range bytes.SplitAfter(fixture(t), []byte("\n")) {
		cut = append(cut, line...)
		if bytes.Contains(line, []byte(`"Test":"TestSubtestsNameTheirOwn","Output":"    fakesuite_test.go`)) {
			break
		}
	}
	cut = append(cut, `{"Action":"output","Package":"`+fakePkg+`","Output":"panic: test timed out after 1s\n"}`+"\n"+
		`{"Action":"fail","Package":"`+fakePkg+`","Elapsed":1}`+"\n"...)
	c := checksOf(t, cut)["TestSubtestsNameTheirOwn"]
	if c.Outcome != evidence.Fail || !strings.Contains(c.Detail, "timeout or crash") {
		t.Fatalf("cut-off test: %+v", c)
	}
}

func TestMatrixFilesFromTheFixture(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "e2e.json")
	if err := os.WriteFile(in, fixture(t), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, err := run([]string{"build", "-out", filepath.Join(dir, "m"), "-root", "../../..", "-version", "Envoy=9.9.9", in}, nil, &out)
	if code != 0 || err != nil {
		t.Fatalf("exit %d: %v", code, err)
	}
	var m evidence.Matrix
	b, _ := os.ReadFile(filepath.Join(dir, "m", "matrix.json"))
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	status := map[string]evidence.Status{}
	for _, r := range m.Rows {
		status[r.ID] = r.Status
	}
	for id, want := range map[string]evidence.Status{
		"CMS-PA-01": evidence.Met, "AUD-01": evidence.Met, "SEC-01": evidence.Failed, "PAS-01": evidence.Gap,
		"CMS-PROV-01": evidence.Failed, "SMART-03": evidence.Met, "AUD-02": evidence.Gap,
	} {
		if status[id] != want {
			t.Errorf("%s: %s, want %s", id, status[id], want)
		}
	}
	if len(m.Rows) != len(evidence.Requirements()) {
		t.Errorf("%d rows, want one per requirement (%d)", len(m.Rows), len(evidence.Requirements()))
	}
	if m.Versions["Envoy"] != "9.9.9" || !strings.Contains(m.Versions["HAPI FHIR"], "pinned in test/stack/hapi/pom.xml") || m.Versions["Go"] == "" || m.Versions["fhirwall"] == "" {
		t.Errorf("versions %v", m.Versions)
	}
	for _, f := range []string{"matrix.md", "matrix.html"} {
		b, err := os.ReadFile(filepath.Join(dir, "m", f))
		if err != nil || !bytes.Contains(b, []byte("CMS-PROV-01")) {
			t.Errorf("%s: %v", f, err)
		}
	}
	if code, err := run([]string{"build", "-strict", "-out", filepath.Join(dir, "m"), "-root", "../../..", in}, nil, &out); code != 1 || err == nil {
		t.Errorf("-strict with gaps and failures: exit %d %v, want 1", code, err)
	}
}

func TestTeeKeepsTheJSONAndPrintsItReadable(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "sub", "e2e.json")
	stream := append([]byte("# building\n"), fixture(t)...)
	var human bytes.Buffer
	if code, err := run([]string{"tee", "-json", keep}, bytes.NewReader(stream), &human); code != 0 || err != nil {
		t.Fatalf("exit %d: %v", code, err)
	}
	kept, _ := os.ReadFile(keep)
	if !bytes.Equal(kept, stream) {
		t.Errorf("the kept stream differs from the input")
	}
	h := human.String()
	for _, want := range []string{"# building\n", "=== RUN   TestPasses\n", "--- FAIL: TestFails", "other member's EOB answered 200", "FAIL\n"} {
		if !strings.Contains(h, want) {
			t.Errorf("human output lacks %q:\n%s", want, h)
		}
	}
	if strings.Contains(h, `"Action"`) {
		t.Errorf("human output carries JSON:\n%s", h)
	}
}

func TestBadUsageIsExitTwoWithTheFix(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"tee"}, {"tee", "-json", "x", "extra"}, {"build", "x.json"}, {"build", "-out", "d"}, {"build", "-out", "d", "-version", "novalue", "-root", ".", "x.json"}} {
		code, err := run(args, strings.NewReader(""), &bytes.Buffer{})
		if code != 2 || err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: exit %d %v; want 2 and a one-line message", args, code, err)
		}
	}
}

func FuzzStream(f *testing.F) {
	if b, err := os.ReadFile("testdata/fakesuite.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"Action":"output","Package":"p","Test":"T/x","Output":"evidence: proves AUD-01\n"}` + "\n" + `{"Action":"fail","Package":"p","Test":"T"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newResults()
		var kept, human bytes.Buffer
		if err := r.tee(bytes.NewReader(b), &kept, &human); err != nil {
			return
		}
		for _, c := range r.checks() {
			if len(c.Requirements) == 0 || (c.Outcome != evidence.Pass && c.Outcome != evidence.Fail && c.Outcome != evidence.Skip) {
				t.Fatalf("bad check %+v", c)
			}
		}
	})
}
