package replay

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteText prints the report for a person: the totals, then one line per group of changes.
func (r Report) WriteText(w io.Writer) error {
	against := "the recorded verdicts"
	if r.Baseline != "" {
		against = "baseline " + r.Baseline
	}
	var b strings.Builder
	fmt.Fprintf(&b, "policy replay: candidate %s against %s\n", r.Candidate, against)
	fmt.Fprintf(&b, "%d decisions: %d unchanged, %d changed, %d not replayable", r.Records, r.Unchanged, r.Changed, r.NotReplayable)
	if r.NotReplayable > 0 {
		var why []string
		for _, k := range slices.Sorted(maps.Keys(r.NotReplayBy)) {
			why = append(why, fmt.Sprintf("%s %d", k, r.NotReplayBy[k]))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(why, ", "))
	}
	b.WriteString("\n")
	if r.CandidateErrors > 0 {
		fmt.Fprintf(&b, "the candidate failed to evaluate %d inputs (counted as changed to policy_error (500))\n", r.CandidateErrors)
	}
	if r.Skipped > 0 {
		fmt.Fprintf(&b, "%d lines were not audit entries and were skipped\n", r.Skipped)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if len(r.Groups) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tFROM\tTO\tAPI\tCLIENT\tEXAMPLES")
	for _, g := range r.Groups {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", g.Count, verdictText(g.From), verdictText(g.To), g.API, dash(g.Client),
			dash(strings.Join(g.Examples, ",")))
	}
	return tw.Flush()
}

func verdictText(v Verdict) string {
	word := "refuse"
	if v.Allow {
		word = "allow"
	}
	return word + " " + v.Key()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
