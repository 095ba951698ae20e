package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/decision/decisiontest"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/policies"
)

const repoConfig = "../../config/fhirwall.yaml"

// policyCopy writes the embedded policy set to a directory, with edit applied to each file's source.
func policyCopy(t *testing.T, edit func(name string, src []byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	names, err := fs.Glob(policies.FS, "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		src, err := fs.ReadFile(policies.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), edit(n, src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// refuseCoverage tightens Patient Access: a Coverage request it would allow is refused (403 cli_test_tightened).
func refuseCoverage(name string, src []byte) []byte {
	if name != "patient_access.rego" {
		return src
	}
	allow := `} else := {"allow": true, "status": 200, "reasons": ["patient_scope"], "obligations": obligations}`
	return bytes.Replace(src, []byte(allow), []byte("} else := refuse(403, \"cli_test_tightened\") if {\n\ttype == \"Coverage\"\n"+allow), 1)
}

// recordedFile is a JSON-lines file of the access records the real core wrote for a member's Coverage and EOB
// searches, decided by the embedded policy with the repository config's data.
func recordedFile(t *testing.T) (file, coverageID string) {
	t.Helper()
	cfg, err := config.LoadFor(repoConfig, config.ForXDS)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.New(context.Background(), policies.FS, cfg.PolicyData())
	if err != nil {
		t.Fatal(err)
	}
	scopes := []string{"openid", "launch/patient", "patient/*.rs"}
	var lines bytes.Buffer
	c := &decision.Core{
		Tokens:   decisiontest.FakeTokens{"m1": {ClientID: "member-app", Subject: "u1", Patient: "member-01", Scopes: scopes}},
		Registry: decisiontest.FakeRegistry{"member-app": {ID: "member-app", Active: true, APIs: []string{"patient-access"}, Scopes: scopes}},
		Policy:   eng, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now,
		Audit: fakeLineSink{&lines},
	}
	for _, path := range []string{"/Coverage", "/ExplanationOfBenefit"} {
		d := c.Decide(context.Background(), decision.Input{API: "patient-access", Method: "GET", Path: path, Authorization: []string{"Bearer m1"}})
		if !d.Allow {
			t.Fatalf("%s refused: %v", path, d.Reasons)
		}
		if err := c.Record(context.Background(), d, 200, 0, 0); err != nil {
			t.Fatal(err)
		}
		if path == "/Coverage" {
			coverageID = d.ID
		}
	}
	file = filepath.Join(t.TempDir(), "records.jsonl")
	if err := os.WriteFile(file, lines.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, coverageID
}

// fakeLineSink writes each record as one JSON line, as a topic extract holds them.
type fakeLineSink struct{ w *bytes.Buffer }

func (s fakeLineSink) Write(_ context.Context, r audit.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.w.Write(append(b, '\n'))
	return nil
}

func replayCLI(t *testing.T, args ...string) (int, string, error) {
	t.Helper()
	var out bytes.Buffer
	code, err := run(context.Background(), append([]string{"policy", "replay", "-config", repoConfig}, args...), &out)
	return code, out.String(), err
}

// TestPolicyReplayExitsOneOnChangesAndZeroWithout: the tightened candidate changes the Coverage decision
// (exit 1, named with the candidate's reason and its decision id); the unchanged set changes nothing (exit 0).
func TestPolicyReplayExitsOneOnChangesAndZeroWithout(t *testing.T) {
	file, coverageID := recordedFile(t)
	code, out, err := replayCLI(t, "-candidate", policyCopy(t, refuseCoverage), "-file", file)
	if code != 1 || err != nil || !strings.Contains(out, "cli_test_tightened (403)") || !strings.Contains(out, coverageID) ||
		!strings.Contains(out, "2 decisions: 1 unchanged, 1 changed, 0 not replayable") {
		t.Fatalf("tightened: exit %d %v\n%s", code, err, out)
	}
	code, out, err = replayCLI(t, "-candidate", policyCopy(t, func(_ string, b []byte) []byte { return b }), "-file", file, "-json")
	if code != 0 || err != nil {
		t.Fatalf("unchanged: exit %d %v\n%s", code, err, out)
	}
	var rep struct{ Unchanged, Changed int }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Unchanged != 2 || rep.Changed != 0 {
		t.Fatalf("-json: %+v %v\n%s", rep, err, out)
	}
}

// TestPolicyReplayCandidateDefaultsToTheDryRunSet: without -candidate, the config's policies.dry_run_dir is
// the candidate; with neither, a usage error says how to name one.
func TestPolicyReplayCandidateDefaultsToTheDryRunSet(t *testing.T) {
	file, _ := recordedFile(t)
	t.Setenv("FHIRWALL_POLICIES_DRY_RUN_DIR", policyCopy(t, refuseCoverage))
	if code, out, err := replayCLI(t, "-file", file); code != 1 || err != nil || !strings.Contains(out, "cli_test_tightened") {
		t.Fatalf("dry-run set as candidate: exit %d %v\n%s", code, err, out)
	}
	t.Setenv("FHIRWALL_POLICIES_DRY_RUN_DIR", "")
	if code, _, err := replayCLI(t, "-file", file); code != 2 || err == nil || !strings.Contains(err.Error(), "-candidate DIR") {
		t.Fatalf("no candidate: exit %d %v", code, err)
	}
}

// TestPolicyReplayRefusesWhatItCannotUse: a candidate that does not compile is one line naming the file; an
// empty directory, an unreadable source and two sources are usage errors (exit 2), never a clean replay.
func TestPolicyReplayRefusesWhatItCannotUse(t *testing.T) {
	file, _ := recordedFile(t)
	broken := policyCopy(t, func(n string, b []byte) []byte {
		if n == "smart.rego" {
			return append(b, []byte("\nbroken_rule if {\n")...)
		}
		return b
	})
	code, _, err := replayCLI(t, "-candidate", broken, "-file", file)
	if code != 2 || err == nil || !strings.Contains(err.Error(), "smart.rego") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("broken candidate: exit %d %v", code, err)
	}
	for name, args := range map[string][]string{
		"empty candidate":  {"-candidate", t.TempDir(), "-file", file},
		"missing file":     {"-candidate", policyCopy(t, refuseCoverage), "-file", filepath.Join(t.TempDir(), "none.jsonl")},
		"two sources":      {"-candidate", policyCopy(t, refuseCoverage), "-file", file, "-spool", t.TempDir()},
		"bad time":         {"-candidate", policyCopy(t, refuseCoverage), "-file", file, "-since", "yesterday"},
		"missing baseline": {"-candidate", policyCopy(t, refuseCoverage), "-file", file, "-baseline", filepath.Join(t.TempDir(), "x")},
	} {
		if code, _, err := replayCLI(t, args...); code != 2 || err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: exit %d %v", name, code, err)
		}
	}
}
