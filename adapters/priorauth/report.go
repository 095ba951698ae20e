package priorauth

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The CMS-0057-F public prior-authorization metrics (89 FR 8758; docs/dev/prior-auth-research.md §4): a
// payer posts them each year, by March 31, for the calendar year before, aggregated for all items and
// services, drugs excluded.
//
// How fhirwall counts, where the rule leaves it open:
//   - A request belongs to the year it was received in (UTC). One decided after December 31 is counted as
//     pended at year end, without a decision time, so that the figures of a year never change afterwards.
//   - A partial approval (some items approved, some denied) counts as approved.
//   - Approved, denied and approved after appeal split the decided requests: an approval marked after
//     appeal is counted there and not again as approved, so the three add up to 100%.
//   - Not counted at all: drug prior authorizations (Request.Drug), requests none of whose items needs prior
//     authorization (every item X12 306 NA), and requests rejected for a business error (StatusError, never
//     reviewed); the report shows how many of each it left out.

// ListedItem is one item or service that needs prior authorization (the metrics' list), from the rules
// the payer edits.
type ListedItem struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
	Rule    string `json:"rule,omitempty"`
}

// Rate is Count of Of requests, in percent rounded to two decimals (0 when Of is 0).
type Rate struct {
	Count   int     `json:"count"`
	Of      int     `json:"of"`
	Percent float64 `json:"percent"`
}

func reportRate(count, of int) Rate {
	r := Rate{Count: count, Of: of}
	if of > 0 {
		r.Percent = math.Round(10000*float64(count)/float64(of)) / 100
	}
	return r
}

// TimeToDecision is the time from receipt to the decision of the decided requests, in seconds.
type TimeToDecision struct {
	Decisions      int     `json:"decisions"`
	AverageSeconds float64 `json:"average_seconds"`
	MedianSeconds  float64 `json:"median_seconds"`
}

func reportTimeToDecision(took []time.Duration) TimeToDecision {
	t := TimeToDecision{Decisions: len(took)}
	if len(took) == 0 {
		return t
	}
	slices.Sort(took)
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	t.AverageSeconds = sum.Seconds() / float64(len(took))
	if mid := len(took) / 2; len(took)%2 == 1 {
		t.MedianSeconds = took[mid].Seconds()
	} else {
		t.MedianSeconds = (took[mid-1].Seconds() + took[mid].Seconds()) / 2
	}
	return t
}

// ClassFigures are the figures of the standard or of the expedited requests.
type ClassFigures struct {
	Requests            int            `json:"requests"` // received in the year and counted
	Decided             int            `json:"decided"`  // by the end of the year
	PendedAtYearEnd     int            `json:"pended_at_year_end"`
	Approved            Rate           `json:"approved"` // partial approvals included
	Denied              Rate           `json:"denied"`
	ApprovedAfterAppeal Rate           `json:"approved_after_appeal"`
	TimeToDecision      TimeToDecision `json:"time_to_decision"`
}

// Excluded counts the requests of the year the metrics leave out.
type Excluded struct {
	Drug                int `json:"drug"`
	NoPriorAuthRequired int `json:"no_prior_auth_required"`
	Rejected            int `json:"rejected"`
}

// Report is one calendar year's public prior-authorization metrics.
type Report struct {
	Year                    int          `json:"year"`
	From                    time.Time    `json:"from"` // January 1, 00:00 UTC
	To                      time.Time    `json:"to"`   // the next January 1, excluded
	ItemsRequiringPriorAuth []ListedItem `json:"items_requiring_prior_auth"`
	Standard                ClassFigures `json:"standard"`
	Expedited               ClassFigures `json:"expedited"`
	// Standard and expedited together: the rule does not split this one.
	ExtendedThenApproved Rate     `json:"extended_then_approved"`
	Excluded             Excluded `json:"excluded"`
}

// YearRange is the calendar year as [from, to) in UTC: what Store.Received is asked for a report.
func YearRange(year int) (from, to time.Time) {
	from = time.Date(year, time.January, 1, 0, 0, 0, 0, time.UTC)
	return from, from.AddDate(1, 0, 0)
}

// BuildReport computes the year's metrics from the requests received in it (others in reqs are ignored)
// and the list of items that need prior authorization.
func BuildReport(year int, reqs []Request, listed []ListedItem) Report {
	b := NewReportBuilder(year, listed)
	for _, r := range reqs {
		b.Add(r)
	}
	return b.Report()
}

// ReportBuilder computes a year's metrics one request at a time, so that a year of requests need not be
// held in memory (Postgres.EachReceived streams them).
type ReportBuilder struct {
	rep                       Report
	standard, expedited       reportTally
	extendedApproved, decided int
}

type reportTally struct {
	requests, decided, pended, approved, denied, afterAppeal int
	took                                                     []time.Duration
}

// NewReportBuilder starts the report of year with the list of items that need prior authorization.
func NewReportBuilder(year int, listed []ListedItem) *ReportBuilder {
	from, to := YearRange(year)
	rep := Report{Year: year, From: from, To: to, ItemsRequiringPriorAuth: slices.Clone(listed)}
	if rep.ItemsRequiringPriorAuth == nil {
		rep.ItemsRequiringPriorAuth = []ListedItem{}
	}
	return &ReportBuilder{rep: rep}
}

// Add counts r if it was received in the year.
func (b *ReportBuilder) Add(r Request) {
	if r.Received.Before(b.rep.From) || !r.Received.Before(b.rep.To) {
		return
	}
	switch {
	case r.Drug:
		b.rep.Excluded.Drug++
		return
	case r.Status == StatusError:
		b.rep.Excluded.Rejected++
		return
	case reportNoPriorAuthRequired(r):
		b.rep.Excluded.NoPriorAuthRequired++
		return
	}
	c := &b.standard
	if r.Expedited {
		c = &b.expedited
	}
	c.requests++
	if r.Status == StatusPended || r.DecidedAt.IsZero() || !r.DecidedAt.Before(b.rep.To) {
		c.pended++
		return
	}
	c.decided++
	b.decided++
	c.took = append(c.took, r.DecidedAt.Sub(r.Received))
	approved := r.Status == StatusApproved || r.Status == StatusPartial
	switch {
	case approved && r.AfterAppeal:
		c.afterAppeal++
	case approved:
		c.approved++
	case r.Status == StatusDenied:
		c.denied++
	}
	if approved && r.Extended {
		b.extendedApproved++
	}
}

// Report returns the figures of the requests added so far.
func (b *ReportBuilder) Report() Report {
	figures := func(c reportTally) ClassFigures {
		return ClassFigures{Requests: c.requests, Decided: c.decided, PendedAtYearEnd: c.pended,
			Approved: reportRate(c.approved, c.decided), Denied: reportRate(c.denied, c.decided),
			ApprovedAfterAppeal: reportRate(c.afterAppeal, c.decided), TimeToDecision: reportTimeToDecision(slices.Clone(c.took))}
	}
	rep := b.rep
	rep.ItemsRequiringPriorAuth = slices.Clone(b.rep.ItemsRequiringPriorAuth)
	rep.Standard, rep.Expedited = figures(b.standard), figures(b.expedited)
	rep.ExtendedThenApproved = reportRate(b.extendedApproved, b.decided)
	return rep
}

// reportNoPriorAuthRequired: every item was answered "no prior authorization needed" (X12 306 NA).
func reportNoPriorAuthRequired(r Request) bool {
	if len(r.Items) == 0 {
		return false
	}
	for _, it := range r.Items {
		if it.Verdict != VerdictNotRequired {
			return false
		}
	}
	return true
}

// Markdown renders the report for posting.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Prior authorization metrics, %d\n\n", r.Year)
	fmt.Fprintf(&b, "CMS-0057-F public reporting (89 FR 8758): requests received from %s to %s (UTC), "+
		"aggregated for all items and services, drugs excluded.\n\n", r.From.Format(time.DateOnly), r.To.AddDate(0, 0, -1).Format(time.DateOnly))

	b.WriteString("## Items and services that require prior authorization\n\n")
	if len(r.ItemsRequiringPriorAuth) == 0 {
		b.WriteString("None listed.\n\n")
	} else {
		b.WriteString("| Code system | Code | Description |\n|---|---|---|\n")
		for _, it := range r.ItemsRequiringPriorAuth {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", reportCell(it.System), reportCell(it.Code), reportCell(it.Display))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Determinations\n\n| | Standard | Expedited |\n|---|---|---|\n")
	row := func(label string, f func(ClassFigures) string) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", label, f(r.Standard), f(r.Expedited))
	}
	row("Requests", func(c ClassFigures) string { return fmt.Sprint(c.Requests) })
	row("Decided by year end", func(c ClassFigures) string { return fmt.Sprint(c.Decided) })
	row("Approved (partial approvals included)", func(c ClassFigures) string { return c.Approved.String() })
	row("Denied", func(c ClassFigures) string { return c.Denied.String() })
	row("Approved after appeal", func(c ClassFigures) string { return c.ApprovedAfterAppeal.String() })
	row("Average time from receipt to decision", func(c ClassFigures) string {
		return reportSeconds(c.TimeToDecision.AverageSeconds, c.TimeToDecision.Decisions)
	})
	row("Median time from receipt to decision", func(c ClassFigures) string {
		return reportSeconds(c.TimeToDecision.MedianSeconds, c.TimeToDecision.Decisions)
	})
	row("Pended at year end (no decision time)", func(c ClassFigures) string { return fmt.Sprint(c.PendedAtYearEnd) })
	fmt.Fprintf(&b, "\nReview timeframe extended, then approved (standard and expedited): %s\n\n", r.ExtendedThenApproved)

	fmt.Fprintf(&b, "Not counted: %d drug prior authorizations, %d requests none of whose items needs prior "+
		"authorization, %d requests rejected for a business error.\n", r.Excluded.Drug, r.Excluded.NoPriorAuthRequired, r.Excluded.Rejected)
	return b.String()
}

// String is "77.78% (7 of 9)", or "n/a (0 of 0)".
func (r Rate) String() string {
	if r.Of == 0 {
		return "n/a (0 of 0)"
	}
	return fmt.Sprintf("%.2f%% (%d of %d)", r.Percent, r.Count, r.Of)
}

func reportSeconds(s float64, n int) string {
	switch {
	case n == 0:
		return "n/a"
	case s < 60:
		return fmt.Sprintf("%.1f s", s)
	case s < 3600:
		return fmt.Sprintf("%.1f min", s/60)
	}
	return fmt.Sprintf("%.1f h", s/3600)
}

// reportCell keeps a value from breaking the Markdown table.
func reportCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ").Replace(s)
}

// QueueStats is the review queue as the metrics show it at now: the pended requests, those past their CMS
// deadline, and the age of the oldest (from its receipt).
func QueueStats(ctx context.Context, s Store, now time.Time) (pended, pastDeadline int, oldest time.Duration, err error) {
	rs, err := s.Pended(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, r := range rs {
		if now.After(r.Deadline) {
			pastDeadline++
		}
		if age := now.Sub(r.Received); age > oldest {
			oldest = age
		}
	}
	return len(rs), pastDeadline, oldest, nil
}
