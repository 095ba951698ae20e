// Package replay evaluates a candidate policy set on the decisions the audit trail recorded (each access
// record's policy input) and reports every decision it would change. It reads records and a policy set; it
// imports internal/audit and internal/policy, and neither imports it.
package replay

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/policy"
)

// Evaluator is a compiled policy set (policy.Engine).
type Evaluator interface {
	Decide(ctx context.Context, input any) (policy.Result, error)
	Revision() string
}

var _ Evaluator = (*policy.Engine)(nil)

// Source calls fn with every raw entry of an audit log (a spool, a Kafka topic, a JSON-lines file).
type Source func(ctx context.Context, fn func(raw []byte) error) error

// Options say what to replay and against what.
type Options struct {
	Candidate Evaluator
	// Baseline, when set, is evaluated on the same inputs and the candidate compared with it; nil compares the
	// candidate with the verdicts the records hold.
	Baseline Evaluator
	// Filter selects the access records replayed (its Kind is ignored: access records only).
	Filter audit.Filter
	// Examples is how many decision ids each group of changes lists; 0 lists none.
	Examples int
}

// Why a record cannot be replayed. Such records are counted apart, never as unchanged.
const (
	NoPolicyInput    = "no_policy_input"  // refused before the policy ran, the policy failed, or written before records held it
	InputTruncated   = "input_truncated"  // the input passed audit.MaxPolicyInput and was left out
	UnreadableInput  = "unreadable_input" // the recorded input is not a JSON object
	BaselineFailed   = "baseline_failed"  // -baseline could not evaluate the input
	PolicyErrorCode  = "policy_error"     // the reason a failed evaluation gets, as the proxy's refusal does
	policyErrorState = 500
)

// Verdict is a policy's answer to one input: what the proxy enforces of it.
type Verdict struct {
	Allow   bool     `json:"allow"`
	Status  int      `json:"status"`
	Reasons []string `json:"reasons"`
}

// Key is the verdict as one word for grouping and printing: its reasons, sorted, comma-joined, and its status.
func (v Verdict) Key() string {
	r := slices.Clone(v.Reasons)
	slices.Sort(r)
	s := strings.Join(r, ",")
	if s == "" {
		s = "-"
	}
	return fmt.Sprintf("%s (%d)", s, v.Status)
}

// Same reports whether the proxy would answer alike: the same allow, status and set of reasons.
func (v Verdict) Same(o Verdict) bool {
	return v.Allow == o.Allow && v.Status == o.Status && v.Key() == o.Key()
}

// Group is the changed decisions of one API and client that went from one verdict to another.
type Group struct {
	From     Verdict  `json:"from"`
	To       Verdict  `json:"to"`
	API      string   `json:"api"`
	Client   string   `json:"client"`
	Count    int      `json:"count"`
	Examples []string `json:"examples"` // decision ids, the first seen
}

// Report is the outcome of a replay. Records = Unchanged + Changed + NotReplayable.
type Report struct {
	Candidate     string         `json:"candidate_revision"`
	Baseline      string         `json:"baseline_revision,omitempty"` // empty: compared with the recorded verdicts
	Records       int            `json:"records"`                     // access records selected, one per decision
	Unchanged     int            `json:"unchanged"`
	Changed       int            `json:"changed"`
	NotReplayable int            `json:"not_replayable"`
	NotReplayBy   map[string]int `json:"not_replayable_by"`
	// CandidateErrors counts inputs the candidate could not evaluate: each is a change to policy_error (500).
	CandidateErrors int     `json:"candidate_errors"`
	Skipped         int     `json:"skipped_lines"` // lines that are not audit entries
	Groups          []Group `json:"changes"`
}

// Run replays every record src yields. An error is the source's (or ctx's): the report is then incomplete.
func Run(ctx context.Context, src Source, o Options) (Report, error) {
	if o.Candidate == nil {
		return Report{}, errors.New("replay: no candidate policy set")
	}
	r := newReplayer(o)
	err := src(ctx, func(raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.add(ctx, raw)
		return nil
	})
	return r.report(), err
}

type groupKey struct{ from, to, api, client string }

type replayer struct {
	o      Options
	rep    Report
	seen   map[string]bool
	groups map[groupKey]*Group
}

func newReplayer(o Options) *replayer {
	rep := Report{Candidate: o.Candidate.Revision(), NotReplayBy: map[string]int{}}
	if o.Baseline != nil {
		rep.Baseline = o.Baseline.Revision()
	}
	o.Filter.Kind = audit.KindAccess
	return &replayer{o: o, rep: rep, seen: map[string]bool{}, groups: map[groupKey]*Group{}}
}

func (r *replayer) add(ctx context.Context, raw []byte) {
	var rec audit.Record
	if json.Unmarshal(raw, &rec) != nil {
		r.rep.Skipped++
		return
	}
	// One decision, one replay: a producer retry repeats a record, and a record split in parts repeats its
	// decision in every part.
	if !r.o.Filter.Match(rec) || rec.DecisionID == "" || r.seen[rec.DecisionID] {
		return
	}
	r.seen[rec.DecisionID] = true
	r.rep.Records++
	pv := rec.Policy
	switch {
	case pv == nil:
		r.notReplayable(NoPolicyInput)
		return
	case pv.Truncated || len(pv.Input) == 0:
		r.notReplayable(InputTruncated)
		return
	}
	input, err := decodeInput(pv.Input)
	if err != nil {
		r.notReplayable(UnreadableInput)
		return
	}
	from := Verdict{Allow: pv.Allow, Status: pv.Status, Reasons: pv.Reasons}
	if r.o.Baseline != nil {
		res, err := r.o.Baseline.Decide(ctx, input)
		if err != nil {
			r.notReplayable(BaselineFailed)
			return
		}
		from = verdictOf(res)
	}
	to := Verdict{Status: policyErrorState, Reasons: []string{PolicyErrorCode}}
	if res, err := r.o.Candidate.Decide(ctx, input); err != nil {
		r.rep.CandidateErrors++
	} else {
		to = verdictOf(res)
	}
	if from.Same(to) {
		r.rep.Unchanged++
		return
	}
	r.rep.Changed++
	k := groupKey{from: from.Key(), to: to.Key(), api: rec.API, client: rec.ClientID}
	g := r.groups[k]
	if g == nil {
		g = &Group{From: from, To: to, API: rec.API, Client: rec.ClientID, Examples: []string{}}
		r.groups[k] = g
	}
	g.Count++
	if len(g.Examples) < r.o.Examples {
		g.Examples = append(g.Examples, rec.DecisionID)
	}
}

func (r *replayer) notReplayable(why string) {
	r.rep.NotReplayable++
	r.rep.NotReplayBy[why]++
}

func (r *replayer) report() Report {
	rep := r.rep
	rep.Groups = make([]Group, 0, len(r.groups))
	for _, g := range r.groups {
		rep.Groups = append(rep.Groups, *g)
	}
	slices.SortFunc(rep.Groups, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.From.Key(), b.From.Key()), cmp.Compare(a.To.Key(), b.To.Key()),
			cmp.Compare(a.API, b.API), cmp.Compare(a.Client, b.Client))
	})
	return rep
}

func verdictOf(res policy.Result) Verdict {
	reasons := res.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	return Verdict{Allow: res.Allow, Status: res.Status, Reasons: reasons}
}

// decodeInput reads a recorded policy input back into the value the policy was given: a JSON object, numbers
// kept as written (the core builds none, but a recorded one must not turn into a float).
func decodeInput(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var in map[string]any
	if err := dec.Decode(&in); err != nil {
		return nil, err
	}
	if in == nil || dec.More() {
		return nil, errors.New("replay: input is not one JSON object")
	}
	return in, nil
}
