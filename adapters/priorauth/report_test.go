package priorauth

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

var reportYearStart = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

// reportReq is a request received at day (days into 2027) and decided took later with status (took 0: not
// decided), changed by opts.
func reportReq(id string, day float64, expedited bool, status Status, took time.Duration, opts ...func(*Request)) Request {
	r := Request{ID: id, Received: reportYearStart.Add(time.Duration(day * 24 * float64(time.Hour))), Expedited: expedited, Status: status,
		Items: []ItemDecision{{Sequence: 1, Product: Code{System: "http://www.ama-assn.org/go/cpt", Code: "33510"}, Verdict: VerdictApproved}}}
	if took > 0 {
		r.DecidedAt = r.Received.Add(took)
	}
	for _, o := range opts {
		o(&r)
	}
	return r
}

var (
	reportExtended    = func(r *Request) { r.Extended = true }
	reportAfterAppeal = func(r *Request) { r.AfterAppeal = true }
	reportDrug        = func(r *Request) { r.Drug = true }
	reportAllNA       = func(r *Request) {
		r.Items = []ItemDecision{{Sequence: 1, Verdict: VerdictNotRequired}, {Sequence: 2, Verdict: VerdictNotRequired}}
	}
	reportAt = func(t time.Time) func(*Request) {
		return func(r *Request) { r.Received = t; r.DecidedAt = t.Add(time.Hour) }
	}
)

// reportYear is a year of requests whose figures are worked out by hand in TestReportFigures.
func reportYear() []Request {
	h := time.Hour
	return []Request{
		// Standard: five decided in the year (24 h, 48 h, 72 h, 120 h, 96 h), two pended at year end.
		reportReq("s1", 10, false, StatusApproved, 24*h),
		reportReq("s2", 20, false, StatusPartial, 48*h),
		reportReq("s3", 30, false, StatusDenied, 72*h, reportExtended), // extended, but denied: not in the extended-then-approved count
		reportReq("s4", 40, false, StatusApproved, 120*h, reportAfterAppeal),
		reportReq("s5", 50, false, StatusApproved, 96*h, reportExtended),
		reportReq("s6", 360, false, StatusPended, 0),
		reportReq("s7", 363, false, StatusApproved, 72*h), // received December 30, decided January 2: pended at year end
		// Expedited: four decided (1 h, 3 h, 2 h, 6 h).
		reportReq("e1", 5, true, StatusApproved, 1*h),
		reportReq("e2", 6, true, StatusDenied, 3*h),
		reportReq("e3", 7, true, StatusApproved, 2*h, reportExtended),
		reportReq("e4", 8, true, StatusPartial, 6*h),
		// Left out.
		reportReq("drug", 9, false, StatusApproved, h, reportDrug),
		reportReq("drug-pended", 9, true, StatusPended, 0, reportDrug),
		reportReq("error", 11, false, StatusError, time.Second),
		reportReq("na", 12, false, StatusApproved, time.Second, reportAllNA),
		reportReq("last-year", 0, false, StatusDenied, h, reportAt(reportYearStart.Add(-time.Second))),
		reportReq("next-year", 0, false, StatusDenied, h, reportAt(reportYearStart.AddDate(1, 0, 0))),
	}
}

var reportListed = []ListedItem{
	{System: "http://www.ama-assn.org/go/cpt", Code: "33510", Display: "Coronary artery bypass, vein only; single graft", Rule: "cabg-review"},
	{System: "https://bluebutton.cms.gov/resources/codesystem/hcpcs", Code: "B4185", Display: "Parenteral nutrition | lipids", Rule: "b4185-deny"},
}

func TestReportFigures(t *testing.T) {
	rep := BuildReport(2027, reportYear(), reportListed)
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"standard requests counted", rep.Standard.Requests, 7},
		{"standard decided by year end", rep.Standard.Decided, 5},
		{"standard pended at year end, the one decided in January included", rep.Standard.PendedAtYearEnd, 2},
		{"standard approved, the partial included and the appealed one not", rep.Standard.Approved, Rate{3, 5, 60}},
		{"standard denied", rep.Standard.Denied, Rate{1, 5, 20}},
		{"standard approved after appeal", rep.Standard.ApprovedAfterAppeal, Rate{1, 5, 20}},
		{"standard average time (24+48+72+120+96)/5 h", rep.Standard.TimeToDecision.AverageSeconds, 72 * 3600.0},
		{"standard median time, the middle of five", rep.Standard.TimeToDecision.MedianSeconds, 72 * 3600.0},
		{"standard decisions timed", rep.Standard.TimeToDecision.Decisions, 5},
		{"expedited requests, the drug one left out", rep.Expedited.Requests, 4},
		{"expedited approved", rep.Expedited.Approved, Rate{3, 4, 75}},
		{"expedited denied", rep.Expedited.Denied, Rate{1, 4, 25}},
		{"expedited average time (1+3+2+6)/4 h", rep.Expedited.TimeToDecision.AverageSeconds, 3 * 3600.0},
		{"expedited median time, between 2 h and 3 h", rep.Expedited.TimeToDecision.MedianSeconds, 2.5 * 3600},
		{"extended then approved, of the 9 decided of both kinds, rounded", rep.ExtendedThenApproved, Rate{2, 9, 22.22}},
		{"left out", rep.Excluded, Excluded{Drug: 2, NoPriorAuthRequired: 1, Rejected: 1}},
		{"the list as given", rep.ItemsRequiringPriorAuth, reportListed},
		{"the year's bounds", [2]time.Time{rep.From, rep.To}, [2]time.Time{reportYearStart, reportYearStart.AddDate(1, 0, 0)}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestReportOfAnEmptyYearHasNoFiguresToDivide(t *testing.T) {
	rep := BuildReport(2027, nil, nil)
	if rep.Standard.Approved != (Rate{}) || rep.Expedited.TimeToDecision != (TimeToDecision{}) || rep.ItemsRequiringPriorAuth == nil {
		t.Fatalf("empty year: %+v", rep)
	}
	md := rep.Markdown()
	for _, want := range []string{"| Approved (partial approvals included) | n/a (0 of 0) | n/a (0 of 0) |",
		"| Average time from receipt to decision | n/a | n/a |", "None listed."} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReportMarkdownShowsEveryCMSFigure(t *testing.T) {
	md := BuildReport(2027, reportYear(), reportListed).Markdown()
	for _, want := range []string{
		"# Prior authorization metrics, 2027",
		"requests received from 2027-01-01 to 2027-12-31 (UTC)",
		"| http://www.ama-assn.org/go/cpt | 33510 | Coronary artery bypass, vein only; single graft |",
		`| Parenteral nutrition \| lipids |`, // a pipe in a display does not break the table
		"| Requests | 7 | 4 |",
		"| Approved (partial approvals included) | 60.00% (3 of 5) | 75.00% (3 of 4) |",
		"| Denied | 20.00% (1 of 5) | 25.00% (1 of 4) |",
		"| Approved after appeal | 20.00% (1 of 5) | 0.00% (0 of 4) |",
		"| Average time from receipt to decision | 72.0 h | 3.0 h |",
		"| Median time from receipt to decision | 72.0 h | 2.5 h |",
		"| Pended at year end (no decision time) | 2 | 0 |",
		"extended, then approved (standard and expedited): 22.22% (2 of 9)",
		"Not counted: 2 drug prior authorizations, 1 requests none of whose items needs prior authorization, 1 requests rejected",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReportJSONNamesTheFigures(t *testing.T) {
	b, err := json.Marshal(BuildReport(2027, reportYear(), reportListed))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	std := got["standard"].(map[string]any)
	if std["approved"].(map[string]any)["percent"] != 60.0 || std["time_to_decision"].(map[string]any)["median_seconds"] != 259200.0 {
		t.Fatalf("standard: %v", std)
	}
	for _, k := range []string{"year", "items_requiring_prior_auth", "expedited", "extended_then_approved", "excluded"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
}

func TestReportTimesShortDecisionsInSecondsAndMinutes(t *testing.T) {
	for _, tc := range []struct {
		s    float64
		want string
	}{{0.4, "0.4 s"}, {90, "1.5 min"}, {5400, "1.5 h"}} {
		if got := reportSeconds(tc.s, 1); got != tc.want {
			t.Errorf("%v s: %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestQueueStatsCountsPendedPastDeadlineAndTheOldest(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	now := time.Date(2027, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, r := range []Request{
		{ID: "overdue-expedited", Status: StatusPended, Received: now.Add(-80 * time.Hour), Deadline: now.Add(-8 * time.Hour)},
		{ID: "standard", Status: StatusPended, Received: now.Add(-100 * time.Hour), Deadline: now.Add(68 * time.Hour)},
		{ID: "due-now", Status: StatusPended, Received: now.Add(-72 * time.Hour), Deadline: now}, // at the deadline, not past it
		{ID: "decided", Status: StatusApproved, Received: now.Add(-500 * time.Hour), Deadline: now.Add(-332 * time.Hour)},
	} {
		if err := s.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	pended, past, oldest, err := QueueStats(ctx, s, now)
	if err != nil || pended != 3 || past != 1 || oldest != 100*time.Hour {
		t.Fatalf("got %d pended, %d past deadline, oldest %v, %v; want 3, 1, 100h", pended, past, oldest, err)
	}
}
