package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/decision/decisiontest"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/policy/replay"
	"github.com/fhirwall/fhirwall/policies"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// tightenedReason is the reason of the one rule the candidate adds.
const tightenedReason = "coverage_withheld_replay_test"

// tightened is the embedded policy set with one rule tightened: Patient Access refuses (403) a Coverage request
// it would have allowed, and nothing else.
func tightened(t testing.TB) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	names, err := fs.Glob(policies.FS, "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		src, err := fs.ReadFile(policies.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "patient_access.rego" {
			allow := `} else := {"allow": true, "status": 200, "reasons": ["patient_scope"], "obligations": obligations}`
			if bytes.Count(src, []byte(allow)) != 1 {
				t.Fatal("patient_access.rego: the final allow is not where this test tightens it")
			}
			src = bytes.Replace(src, []byte(allow), []byte(`} else := refuse(403, "`+tightenedReason+`") if {
	type == "Coverage"
`+allow), 1)
		}
		out[n] = &fstest.MapFile{Data: src}
	}
	return out
}

func policyData(t testing.TB) map[string]any {
	t.Helper()
	cfg, err := config.LoadFor("../../../config/fhirwall.yaml", config.ForXDS)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.PolicyData()
}

func engine(t testing.TB, fsys fs.FS) *policy.Engine {
	t.Helper()
	e, err := policy.New(context.Background(), fsys, policyData(t))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// fakeRecordSink keeps the records the core writes, as the JSON lines a spool or topic would hold.
type fakeRecordSink struct {
	mu    sync.Mutex
	lines [][]byte
}

func (s *fakeRecordSink) Write(_ context.Context, r audit.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, b)
	return nil
}

// fakeSource is a replay.Source over lines held in memory.
func fakeSource(lines ...[]byte) replay.Source {
	return func(_ context.Context, fn func([]byte) error) error {
		for _, l := range lines {
			if err := fn(l); err != nil {
				return err
			}
		}
		return nil
	}
}

// recorded is traffic decided by the real embedded policy and recorded by the real core, and what was asked.
type recorded struct {
	lines          [][]byte
	coverageMember string // the decision id of member-01's own Coverage search
	coverageOther  string // member-02's (the second client)
	eob            string
	refusedBefore  string // a client the registry does not know: refused before the policy ran
}

func record(t *testing.T) recorded {
	t.Helper()
	scopes := []string{"openid", "launch/patient", "patient/*.rs"}
	c := &decision.Core{
		Tokens: decisiontest.FakeTokens{
			"member-01": {ClientID: "member-app", Subject: "u1", Patient: "member-01", FHIRUser: "Patient/member-01", Scopes: scopes},
			"member-02": {ClientID: "other-app", Subject: "u2", Patient: "member-02", Scopes: scopes},
			"stranger":  {ClientID: "stranger", Subject: "u3", Patient: "member-03", Scopes: scopes},
		},
		Registry: decisiontest.FakeRegistry{
			"member-app": {ID: "member-app", Active: true, APIs: []string{"patient-access"}, Scopes: scopes, Tier: "standard"},
			"other-app":  {ID: "other-app", Active: true, APIs: []string{"patient-access"}, Scopes: scopes, Tier: "standard"},
		},
		Policy: engine(t, policies.FS),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    time.Now,
	}
	sink := &fakeRecordSink{}
	c.Audit = sink
	ctx := context.Background()
	ask := func(tok, path, query string) *decision.Decision {
		d := c.Decide(ctx, decision.Input{API: "patient-access", Method: "GET", Path: path, RawQuery: query,
			Authorization: []string{"Bearer " + tok}})
		if err := c.Record(ctx, d, d.Refusal.Status, 0, 0); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var r recorded
	for _, want := range []struct {
		id          *string
		tok, path   string
		query       string
		allow       bool
		policyGiven bool
	}{
		{&r.coverageMember, "member-01", "/Coverage", "", true, true},
		{&r.coverageOther, "member-02", "/Coverage", "", true, true},
		{&r.eob, "member-01", "/ExplanationOfBenefit", "", true, true},
		{nil, "member-01", "/Coverage", "patient=member-02", false, true}, // not_this_patient: refused by the policy
		{nil, "member-01", "/Claim", "", false, true},                     // a type the API does not serve
		{&r.refusedBefore, "stranger", "/Coverage", "", false, false},
	} {
		d := ask(want.tok, want.path, want.query)
		if d.Allow != want.allow || (d.PolicyInput != nil) != want.policyGiven {
			t.Fatalf("%s %s?%s: allow %v %v, input %v", want.tok, want.path, want.query, d.Allow, d.Reasons, d.PolicyInput != nil)
		}
		if want.id != nil {
			*want.id = d.ID
		}
	}
	r.lines = sink.lines
	return r
}

// TestTighteningOneRuleChangesExactlyTheDecisionsItMatches: with the embedded policy's recorded decisions, a
// candidate that refuses Patient Access Coverage changes the two allowed Coverage searches (one group per
// client, each naming its decision), nothing else; the refusal before the policy is not replayable.
func TestTighteningOneRuleChangesExactlyTheDecisionsItMatches(t *testing.T) {
	rec := record(t)
	rep, err := replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: engine(t, tightened(t)), Examples: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 6 || rep.Changed != 2 || rep.Unchanged != 3 || rep.NotReplayable != 1 || rep.NotReplayBy[replay.NoPolicyInput] != 1 {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Groups) != 2 {
		t.Fatalf("groups %+v", rep.Groups)
	}
	byClient := map[string]replay.Group{}
	for _, g := range rep.Groups {
		byClient[g.Client] = g
		if g.Count != 1 || g.API != "patient-access" || !g.From.Allow || g.From.Key() != "patient_scope (200)" ||
			g.To.Allow || g.To.Key() != tightenedReason+" (403)" {
			t.Errorf("group %+v", g)
		}
	}
	if ex := byClient["member-app"].Examples; len(ex) != 1 || ex[0] != rec.coverageMember {
		t.Errorf("member-app examples %v, want [%s]", ex, rec.coverageMember)
	}
	if ex := byClient["other-app"].Examples; len(ex) != 1 || ex[0] != rec.coverageOther {
		t.Errorf("other-app examples %v, want [%s]", ex, rec.coverageOther)
	}
}

// TestTheRecordedPolicyReplaysUnchanged: the policy that decided, replayed on its own records, changes
// nothing: the recorded input is the whole of what it decided on.
func TestTheRecordedPolicyReplaysUnchanged(t *testing.T) {
	rec := record(t)
	rep, err := replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: engine(t, policies.FS)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 0 || rep.Unchanged != 5 || len(rep.Groups) != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// TestBaselineIsEvaluatedOnTheSameInputs: against -baseline (here the embedded set, whose records these are
// not told apart from) the tightened candidate changes the same decisions; a baseline equal to the candidate
// changes none, whatever was recorded.
func TestBaselineIsEvaluatedOnTheSameInputs(t *testing.T) {
	rec := record(t)
	cand := engine(t, tightened(t))
	rep, err := replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: cand, Baseline: engine(t, policies.FS)})
	if err != nil || rep.Changed != 2 || rep.Baseline == "" || rep.Baseline == rep.Candidate {
		t.Fatalf("report %+v, %v", rep, err)
	}
	rep, err = replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: cand, Baseline: cand})
	if err != nil || rep.Changed != 0 || rep.Unchanged != 5 {
		t.Fatalf("candidate against itself: %+v, %v", rep, err)
	}
}

// TestRecordsWithoutAnInputAreNotReplayableNeverUnchanged: an older record (no policy member), a truncated
// input and an unreadable one are each counted by why; repeats of a decision (a producer retry, the parts of
// a split record) count once; lines that are not entries are skipped and counted.
func TestRecordsWithoutAnInputAreNotReplayableNeverUnchanged(t *testing.T) {
	rec := record(t)
	var first audit.Record
	if err := json.Unmarshal(rec.lines[0], &first); err != nil {
		t.Fatal(err)
	}
	edit := func(id string, f func(r *audit.Record)) []byte {
		r := first
		r.ID, r.DecisionID = id+"-record", id
		pv := *first.Policy
		r.Policy = &pv
		f(&r)
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	lines := [][]byte{
		edit("older", func(r *audit.Record) { r.Policy = nil }),
		edit("truncated", func(r *audit.Record) { r.Policy.Input, r.Policy.Truncated = nil, true }),
		edit("unreadable", func(r *audit.Record) { r.Policy.Input = json.RawMessage(`[1,2]`) }),
		rec.lines[0], rec.lines[0], // a retry's repeat
		[]byte(`not json`),
		[]byte(`{"kind":"checkpoint","id":"c1"}`),
	}
	rep, err := replay.Run(context.Background(), fakeSource(lines...), replay.Options{Candidate: engine(t, policies.FS)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{replay.NoPolicyInput: 1, replay.InputTruncated: 1, replay.UnreadableInput: 1}
	if rep.Records != 4 || rep.Unchanged != 1 || rep.NotReplayable != 3 || rep.Skipped != 1 || len(rep.NotReplayBy) != len(want) {
		t.Fatalf("report %+v", rep)
	}
	for k, n := range want {
		if rep.NotReplayBy[k] != n {
			t.Errorf("%s: %d, want %d", k, rep.NotReplayBy[k], n)
		}
	}
}

// fakeFailingEvaluator fails every evaluation, as a candidate with a runtime error would.
type fakeFailingEvaluator struct{}

func (fakeFailingEvaluator) Decide(context.Context, any) (policy.Result, error) {
	return policy.Result{}, errors.New("fake: evaluation failed")
}
func (fakeFailingEvaluator) Revision() string { return "fake-failing" }

// TestACandidateThatFailsIsAChangeToPolicyError: a candidate that cannot evaluate an input would refuse it
// (500 policy_error, as the proxy does): every replayable decision changes, none is hidden as unchanged.
func TestACandidateThatFailsIsAChangeToPolicyError(t *testing.T) {
	rec := record(t)
	rep, err := replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: fakeFailingEvaluator{}, Examples: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 5 || rep.CandidateErrors != 5 || rep.Unchanged != 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, g := range rep.Groups {
		if g.To.Key() != "policy_error (500)" || len(g.Examples) != 1 {
			t.Errorf("group %+v", g)
		}
	}
}

// TestFilterAndExampleLimit: -client and -api select records before they are counted, and a group lists at
// most Examples decision ids however many it counts.
func TestFilterAndExampleLimit(t *testing.T) {
	rec := record(t)
	cand := engine(t, tightened(t))
	rep, err := replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: cand,
		Filter: audit.Filter{Client: "other-app"}, Examples: 0})
	if err != nil || rep.Records != 1 || rep.Changed != 1 || len(rep.Groups[0].Examples) != 0 {
		t.Fatalf("client filter: %+v, %v", rep, err)
	}
	rep, err = replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: cand, Filter: audit.Filter{API: "provider-access"}})
	if err != nil || rep.Records != 0 {
		t.Fatalf("api filter: %+v, %v", rep, err)
	}
}

// TestReportTextNamesEveryGroup: the printed report has the totals and one line per group with its examples.
func TestReportTextNamesEveryGroup(t *testing.T) {
	rec := record(t)
	rep, err := replay.Run(context.Background(), fakeSource(rec.lines...), replay.Options{Candidate: engine(t, tightened(t)), Examples: 3})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"6 decisions: 3 unchanged, 2 changed, 1 not replayable (no_policy_input 1)",
		"allow patient_scope (200)", "refuse " + tightenedReason + " (403)", rec.coverageMember, rec.coverageOther} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// FuzzReplayRecord: whatever a line holds, replay neither panics nor loses a decision: every record selected
// is unchanged, changed or not replayable. go test ./internal/policy/replay -run '^$' -fuzz FuzzReplayRecord
func FuzzReplayRecord(f *testing.F) {
	f.Add([]byte(`{"kind":"access","decision_id":"d1","api":"patient-access","policy":{"input":{"api":"patient-access","request":{}},"allow":true,"status":200,"reasons":["patient_scope"],"revision":"r"}}`))
	f.Add([]byte(`{"kind":"access","decision_id":"d1","policy":{"truncated":true,"allow":false,"status":403,"reasons":null,"revision":""}}`))
	f.Add([]byte(`{"decision_id":"d1","policy":{"input":{"a":1e400}}}`))
	f.Add([]byte(`{"decision_id":"d1","policy":{"input":{"a":1} {}}}`))
	cand := fakeEchoEvaluator{}
	f.Fuzz(func(t *testing.T, line []byte) {
		rep, err := replay.Run(context.Background(), fakeSource(line, line), replay.Options{Candidate: cand, Examples: 2})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Records > 1 || rep.Records != rep.Unchanged+rep.Changed+rep.NotReplayable {
			t.Fatalf("report %+v", rep)
		}
	})
}

// fakeEchoEvaluator answers from the input alone (allow when input.allow is true), fast enough to fuzz with.
type fakeEchoEvaluator struct{}

func (fakeEchoEvaluator) Decide(_ context.Context, input any) (policy.Result, error) {
	m, _ := input.(map[string]any)
	if m["fail"] != nil {
		return policy.Result{}, errors.New("fake: fail")
	}
	if m["allow"] == true {
		return policy.Result{Allow: true, Status: 200, Reasons: []string{"fake"}}, nil
	}
	return policy.Result{Status: 403, Reasons: []string{"fake"}}, nil
}
func (fakeEchoEvaluator) Revision() string { return "fake-echo" }

// TestRecordedInputsFollowThePolicyInputSchema: what replay feeds a candidate is the documented policy input
// (policies/schema/input.schema.json), so a candidate written against that schema sees what it expects.
func TestRecordedInputsFollowThePolicyInputSchema(t *testing.T) {
	f, err := os.Open("../../../policies/schema/input.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("input.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("input.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range record(t).lines {
		var r audit.Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		if r.Policy == nil {
			continue
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.Policy.Input))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(v); err != nil {
			t.Errorf("recorded input %s: %v", r.Policy.Input, err)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("%d recorded inputs, want 5", n)
	}
}
