//go:build e2e

// Package policyreplay runs `fhirwall policy replay`'s library on the real stack's audit topic: a candidate
// that tightens one rule of the embedded policy set must change exactly the recorded decisions that rule
// matches (docs/policy-replay.md).
package policyreplay

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/policy/replay"
	"github.com/fhirwall/fhirwall/policies"
	"github.com/fhirwall/fhirwall/test/stackaudit"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
	"github.com/fhirwall/fhirwall/test/stackhttp"
)

// tightenedReason is the reason of the one rule the candidate adds: Patient Access refuses (403) a Coverage
// request it would otherwise allow. The suites read Coverage through Patient Access, and so does this test.
const tightenedReason = "coverage_withheld_by_replay_candidate"

const patientAccess = "/patient-access/fhir"

// candidateDir writes the policy set fhirwall embeds (policies.FS: policies/*.rego, the one fhirwall-proxy
// enforces when policies.dir is empty, as in the stack's config) to a directory, with the one rule tightened
// in front of Patient Access's final allow, so only decisions it would allow can change.
func candidateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	names, err := fs.Glob(policies.FS, "*.rego")
	if err != nil || len(names) == 0 {
		t.Fatalf("embedded policies: %v %v", names, err)
	}
	for _, n := range names {
		src, err := fs.ReadFile(policies.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "patient_access.rego" {
			allow := []byte(`} else := {"allow": true, "status": 200, "reasons": ["patient_scope"], "obligations": obligations}`)
			if bytes.Count(src, allow) != 1 {
				t.Fatal("patient_access.rego: its final allow is not where this test tightens it")
			}
			src = bytes.Replace(src, allow, append([]byte("} else := refuse(403, \""+tightenedReason+"\") if {\n\ttype == \"Coverage\"\n"), allow...), 1)
		}
		if err := os.WriteFile(filepath.Join(dir, n), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ownRequest is one request this test makes and what the replay must say of it.
type ownRequest struct {
	face, path string
	status     int
	changes    bool // the tightened rule matches it
	decisionID string
}

func TestTighteningOneRuleChangesExactlyTheRecordedDecisionsItMatches(t *testing.T) {
	evidence.Proves(t, "OPS-REPLAY-01")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	since := time.Now().Add(-2 * time.Second).UTC() // the proxy's clock is this machine's

	// Requests of its own through both faces, so the test never depends on what other suites left in the topic.
	tok, err := stackauth.Member(ctx, "member01", "openid", "fhirUser", "launch/patient", "patient/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	httpc, err := stackenv.Client(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sender := stackhttp.Client{HTTP: httpc, RetryOn: []int{429}, Retries: 10, Wait: time.Second}
	var own []*ownRequest
	for face, base := range map[string]string{"envoy": stackenv.EnvoyURL(), "standalone": stackenv.StandaloneURL} {
		for _, r := range []ownRequest{
			{face: face, path: "/Coverage", status: 200, changes: true},
			{face: face, path: "/ExplanationOfBenefit?_count=1", status: 200},
			{face: face, path: "/Coverage?patient=member-02", status: 404}, // not_this_patient: refused before the final allow
		} {
			a, err := sender.Send(ctx, t, stackhttp.Request{Method: "GET", URL: base + patientAccess + r.path, Token: tok.AccessToken})
			if err != nil {
				t.Fatal(err)
			}
			if a.Status != r.status || a.DecisionID == "" {
				t.Fatalf("%s GET %s: %d (decision %q), want %d: %.300s", face, r.path, a.Status, a.DecisionID, r.status, a.Body)
			}
			r.decisionID = a.DecisionID
			own = append(own, &r)
		}
	}

	// Their records reach the topic through each replica's spool: wait until all are there.
	missing := map[string]bool{}
	for _, r := range own {
		missing[r.decisionID] = true
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 60*time.Second)
	found, err := stackaudit.Scan(waitCtx, since, func(rec map[string]any) bool {
		id, _ := rec["decision_id"].(string)
		delete(missing, id)
		return len(missing) == 0
	})
	waitCancel()
	if err != nil || !found {
		t.Fatalf("records of decisions %v not in %s after 60s (%v)", slices.Collect(maps.Keys(missing)), stackaudit.Topic, err)
	}

	// The policy data the stack's proxy decides with: its runtime config.
	cfg, err := config.LoadFor(filepath.Join(stackenv.StateDir(), "config", "fhirwall.yaml"), config.ForXDS)
	if err != nil {
		t.Fatal(err)
	}
	cand, err := policy.New(ctx, os.DirFS(candidateDir(t)), cfg.PolicyData())
	if err != nil {
		t.Fatalf("candidate: %v", err)
	}
	current, err := policy.New(ctx, policies.FS, cfg.PolicyData())
	if err != nil {
		t.Fatal(err)
	}

	// The records, read once from the topic as `fhirwall policy replay -kafka` reads it, and scanned
	// independently of replay: the recorded allowed decisions the tightened rule matches.
	var lines [][]byte
	if err := kafka.ReadTopic(ctx, []string{stackaudit.Broker}, stackaudit.Topic, func(m audit.Message) error {
		lines = append(lines, m.Value)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	filter := audit.Filter{Since: since}
	expected, replayable, seen := map[string]bool{}, 0, map[string]bool{}
	for _, l := range lines {
		var r audit.Record
		if json.Unmarshal(l, &r) != nil || !filter.Match(r) || seen[r.DecisionID] {
			continue
		}
		seen[r.DecisionID] = true
		for _, o := range own {
			if o.decisionID != r.DecisionID {
				continue
			}
			if r.Policy == nil || len(r.Policy.Input) == 0 {
				t.Fatalf("the record of %s GET %s has no policy input: the stack's fhirwall-proxy predates policy replay "+
					"(rebuild and restart it from this checkout: test/stack/fhirwall.sh build)", o.face, o.path)
			}
			if r.Policy.Revision != current.Revision() {
				t.Fatalf("the stack decided %s GET %s with policy revision %s; this checkout's embedded set with the stack's config is %s: "+
					"rebuild the stack from this checkout", o.face, o.path, r.Policy.Revision, current.Revision())
			}
		}
		if r.Policy == nil || r.Policy.Truncated {
			continue
		}
		replayable++
		if r.Policy.Allow && slices.Equal(r.Policy.Reasons, []string{"patient_scope"}) && r.ResourceType == "Coverage" {
			expected[r.DecisionID] = true
		}
	}
	for _, o := range own {
		if o.changes != expected[o.decisionID] {
			t.Fatalf("%s GET %s: the scan counts it as matching the rule: %v, want %v", o.face, o.path, expected[o.decisionID], o.changes)
		}
	}

	src := func(_ context.Context, fn func([]byte) error) error {
		for _, l := range lines {
			if err := fn(l); err != nil {
				return err
			}
		}
		return nil
	}
	rep, err := replay.Run(ctx, src, replay.Options{Candidate: cand, Filter: filter, Examples: len(lines)})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.WriteText(&out)
	t.Logf("%s", out.String())

	// By count: exactly the matching decisions changed, every other replayable one did not.
	if rep.Changed != len(expected) || rep.Unchanged != replayable-len(expected) || rep.CandidateErrors != 0 {
		t.Fatalf("changed %d, unchanged %d, candidate errors %d; the scan finds %d matching of %d replayable",
			rep.Changed, rep.Unchanged, rep.CandidateErrors, len(expected), replayable)
	}
	// By example: every changed decision is a matching one, from patient_scope to the candidate's reason,
	// and this test's own Coverage reads through both faces are among them.
	changed := map[string]bool{}
	for _, g := range rep.Groups {
		if !g.From.Allow || g.From.Key() != "patient_scope (200)" || g.To.Allow || g.To.Key() != tightenedReason+" (403)" {
			t.Errorf("a change the tightened rule does not make: %+v", g)
		}
		for _, id := range g.Examples {
			changed[id] = true
			if !expected[id] {
				t.Errorf("decision %s changed but does not match the rule", id)
			}
		}
	}
	for _, o := range own {
		if changed[o.decisionID] != o.changes {
			t.Errorf("%s GET %s (decision %s): changed %v, want %v", o.face, o.path, o.decisionID, changed[o.decisionID], o.changes)
		}
	}
}
