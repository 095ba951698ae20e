package audit

import (
	"fmt"
	"strings"
)

// CMSReport holds the CMS-0057-F Patient Access API metrics for one calendar year (final rule, 89 FR 8758,
// 8 February 2024; required of MA organisations, Medicaid and CHIP programs and managed care plans, and QHP
// issuers on the FFEs). Each year, for the previous calendar year, a payer reports to CMS, as aggregated
// de-identified data,
//
//	(a) the number of unique patients whose data were transferred through the Patient Access API to a health
//	    app the patient designated, and
//	(b) the number of unique patients whose data were transferred more than once.
//
// fhirwall counts a transfer from its audit records: an access record with allow true, a 2xx status, the
// Patient Access API, at least one patient and at least one data category (data actually left; a refusal, an
// empty search or a CapabilityStatement is not a transfer). A record that names several patients is a
// transfer of each. The rule does not define "more than once": an app fetching a member's data sends dozens
// of requests within a minute, so counting requests would make (b) almost equal to (a). RepeatDay therefore
// counts a patient in (b) when transfers happened on two or more distinct UTC days; RepeatRequest, when there
// were two or more transfer records. The report states which one it used. Years and days are UTC.
type CMSReport struct {
	Year       int    `json:"year"`
	API        string `json:"api"`
	RepeatUnit string `json:"repeat_unit"`
	// UniquePatients is metric (a), RepeatPatients metric (b).
	UniquePatients int `json:"unique_patients"`
	RepeatPatients int `json:"repeat_patients"`
	// Transfers is the number of distinct transfers counted (the parts of a split record are one); Records every record read; Duplicates the
	// transfer records read again under an id already counted (a producer retry) and ignored.
	Transfers  int `json:"transfers"`
	Records    int `json:"records"`
	Duplicates int `json:"duplicates"`
}

// Repeat units of a CMSReport.
const (
	RepeatDay     = "day"
	RepeatRequest = "request"
)

// DefaultPatientAccessAPI is the API name (config `apis[].name`) whose records count as Patient Access.
const DefaultPatientAccessAPI = "patient-access"

// CMSOptions configures a CMSAccumulator. Zero API and RepeatUnit mean DefaultPatientAccessAPI and RepeatDay.
type CMSOptions struct {
	Year       int
	API        string
	RepeatUnit string
}

// CMSAccumulator computes a CMSReport from a stream of records in any order. It keeps one entry per patient
// and one per transfer record id (to drop duplicates), nothing for records that are not transfers.
type CMSAccumulator struct {
	rep      CMSReport
	seen     map[string]struct{}
	splits   map[string]int // split_id → the unit of its first part read: the parts of a record are one transfer
	patients map[string]*patientUse
	next     int // request ordinal, the unit of RepeatRequest
}

type patientUse struct {
	first  int // unit of the first transfer: day number or request ordinal
	repeat bool
}

// NewCMSReport starts a report for the calendar year o.Year.
func NewCMSReport(o CMSOptions) (*CMSAccumulator, error) {
	if o.API == "" {
		o.API = DefaultPatientAccessAPI
	}
	if o.RepeatUnit == "" {
		o.RepeatUnit = RepeatDay
	}
	if o.RepeatUnit != RepeatDay && o.RepeatUnit != RepeatRequest {
		return nil, fmt.Errorf("repeat unit %q: want %q or %q", o.RepeatUnit, RepeatDay, RepeatRequest)
	}
	if o.Year < 1 || o.Year > 9999 {
		return nil, fmt.Errorf("year %d out of range", o.Year)
	}
	return &CMSAccumulator{
		rep:      CMSReport{Year: o.Year, API: o.API, RepeatUnit: o.RepeatUnit},
		seen:     map[string]struct{}{},
		splits:   map[string]int{},
		patients: map[string]*patientUse{},
	}, nil
}

// Add counts r if it is a transfer of the report's year.
func (a *CMSAccumulator) Add(r Record) {
	a.rep.Records++
	if !a.isTransfer(r) {
		return
	}
	if r.ID != "" { // an id-less record cannot be de-duplicated; count it rather than lose it
		if _, dup := a.seen[r.ID]; dup {
			a.rep.Duplicates++
			return
		}
		a.seen[r.ID] = struct{}{}
	}
	unit, counted := a.splits[r.SplitID]
	if r.SplitID == "" || !counted {
		a.rep.Transfers++
		unit = a.next
		a.next++
		if a.rep.RepeatUnit == RepeatDay {
			unit = r.Time.UTC().YearDay()
		}
		if r.SplitID != "" {
			a.splits[r.SplitID] = unit
		}
	}
	for _, p := range r.Patients {
		if p == "" {
			continue
		}
		u := a.patients[p]
		switch {
		case u == nil:
			a.patients[p] = &patientUse{first: unit}
		case !u.repeat && u.first != unit:
			u.repeat = true
			a.rep.RepeatPatients++
		}
	}
}

func (a *CMSAccumulator) isTransfer(r Record) bool {
	return (r.Kind == KindAccess || r.Kind == "") && r.Allow && r.Status >= 200 && r.Status < 300 &&
		r.API == a.rep.API && r.Time.UTC().Year() == a.rep.Year &&
		len(r.Patients) > 0 && len(r.DataCategories) > 0
}

// Result returns the report for the records added so far.
func (a *CMSAccumulator) Result() CMSReport {
	rep := a.rep
	rep.UniquePatients = len(a.patients)
	return rep
}

// Text renders the report for a person filling in the CMS submission.
func (r CMSReport) Text() string {
	repeat := "on two or more distinct UTC days"
	if r.RepeatUnit == RepeatRequest {
		repeat = "in two or more requests"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CMS-0057-F Patient Access API usage, calendar year %d (UTC), API %q\n", r.Year, r.API)
	fmt.Fprintf(&b, "  unique patients whose data were transferred to an app:              %d\n", r.UniquePatients)
	fmt.Fprintf(&b, "  unique patients whose data were transferred more than once:         %d\n", r.RepeatPatients)
	fmt.Fprintf(&b, "    (more than once = transfers %s)\n", repeat)
	fmt.Fprintf(&b, "  transfer records: %d; records read: %d; duplicate records ignored: %d\n",
		r.Transfers, r.Records, r.Duplicates)
	return b.String()
}
