package datascope

import (
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

// Payer-to-Payer (CMS-0057-F; FHIR-NOTES "CMS-0057-F: what each API may return"): what Provider Access
// returns, less denied prior authorizations and anything older than five years. The rows are in table.go;
// here is how they read a resource.

// payerToPayerYears: "dates of service within the last 5 years" of the decision time.
const payerToPayerYears = 5

// Review decisions: PDex pdex-priorauthorization (ExplanationOfBenefit) and PAS profile-claimresponse carry
// one per line (and optionally for the whole request) as item.adjudication.extension:reviewAction (PDex
// 2.x extension-reviewAction, PAS 2.x extension-reviewAction, same shape), whose sub-extension "code"
// (extension-reviewActionCode) holds an X12 306 (HCR01, Action Code) CodeableConcept.
const (
	x12ActionCodeSystem = "https://codesystem.x12.org/005010/306"
	pdexReviewAction    = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewAction"
	pasReviewAction     = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction"
	pdexReviewCode      = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewActionCode"
	pasReviewCode       = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewActionCode"
)

// X12 306 action codes, as PAS 2.x uses them: A1 certified in total, A2 certified – partial (the
// authorization covers less than was asked: fewer units, a shorter period), A6 modified (PAS spec-36: "the
// authorized item is a modification of the requested item") are approvals: each leaves an authorization
// in effect, which is what CMS-0057-F calls active, and the new payer needs it for continuity of care. A4
// is pended. Everything else is not clearly pending or active and withholds: A3 not certified (denied), C
// cancelled, CT contact payer, D deferred, NA no action required, and codes nobody has listed.
var (
	approvedActions = []string{"A1", "A2", "A6"}
	pendedActions   = []string{"A4"}
)

// priorAuthDecision reads the decision of a prior authorization (isPriorAuth).
//
// denied: a review action A3 (in any code system), an adjudication coded "denialreason" (PDex
// PDexAdjudicationDiscriminator: the pdex-priorauthorization slice item.adjudication:denialreason, reason
// 1..1) or "denied" (PDexPayerAdjudicationStatus), or outcome "error" (PAS: the request was rejected and
// never reviewed; ClaimResponse.error says why).
//
// pendingOrApproved: outcome "queued" (R4 remittance-outcome: received, processing not begun) with no
// review action other than pended or approved ones; or outcome "complete" or "partial" with at least one
// review action and every one of them pended or approved (X12 306 system). A PAS Claim is the request and
// never carries the decision (R4 Claim has no outcome or adjudication): it cannot be read as pending or
// approved. A review action that cannot be read (wrong JSON types, no code, a code outside X12 306, or
// inside an element the money removal would take away) makes the whole decision unreadable.
func priorAuthDecision(res map[string]any) (denied, pendingOrApproved bool) {
	if rt, _ := res["resourceType"].(string); rt == "Claim" {
		return false, false
	}
	r := reviews{}
	for k, v := range res {
		if k != "resourceType" {
			r.scan(v, isMoney(k, v))
		}
	}
	outcome, _ := res["outcome"].(string)
	for _, c := range r.codes {
		if c.code == "A3" {
			r.denied = true
		}
	}
	if r.denied || outcome == "error" {
		return true, false
	}
	if r.unreadable {
		return false, false
	}
	for _, c := range r.codes {
		if c.system != x12ActionCodeSystem || !(slices.Contains(approvedActions, c.code) || slices.Contains(pendedActions, c.code)) {
			return false, false
		}
	}
	switch outcome {
	case "queued":
		return false, true
	case "complete", "partial":
		return false, len(r.codes) > 0
	}
	return false, false
}

type reviewCode struct{ system, code string }

type reviews struct {
	codes      []reviewCode
	denied     bool
	unreadable bool
}

// scan walks one resource's elements (not the resources nested in it: their own rows judge them) for review
// actions and denial codes. inMoney: v sits in an element stripMoney removes; a decision read from there
// would be gone on the next pass, so it is unreadable.
func (r *reviews) scan(v any, inMoney bool) {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			r.scan(e, inMoney)
		}
	case map[string]any:
		if _, nested := t["resourceType"].(string); nested {
			return
		}
		inMoney = inMoney || moneyShaped(t)
		if code, _ := t["code"].(string); code == "denialreason" || code == "denied" {
			r.denied = true
		}
		if url, _ := t["url"].(string); isURL(url, pdexReviewAction, pasReviewAction) {
			r.reviewAction(t, inMoney)
			return
		}
		for k, e := range t {
			r.scan(e, inMoney || isMoney(k, e))
		}
	}
}

// reviewAction reads extension-reviewAction: its sub-extension code (url extension-reviewActionCode; "code",
// the slice name, is read too) holds valueCodeableConcept. Other sub-extensions (number, reasonCode,
// secondSurgicalOpinionFlag) say nothing about the decision.
func (r *reviews) reviewAction(ext map[string]any, inMoney bool) {
	subs, ok := ext["extension"].([]any)
	if !ok || inMoney {
		r.unreadable = true
		return
	}
	found := false
	for _, s := range subs {
		sub, ok := s.(map[string]any)
		if !ok {
			r.unreadable = true
			continue
		}
		url, _ := sub["url"].(string)
		if !isURL(url, pdexReviewCode, pasReviewCode) && url != "code" {
			continue
		}
		found = true
		cc, ok := sub["valueCodeableConcept"].(map[string]any)
		coding, ok2 := cc["coding"].([]any)
		if !ok || !ok2 || len(coding) == 0 || moneyShaped(sub) || moneyShaped(cc) {
			r.unreadable = true
			continue
		}
		for _, c := range coding {
			m, ok := c.(map[string]any)
			system, ok2 := m["system"].(string)
			code, ok3 := m["code"].(string)
			if !ok || !ok2 || !ok3 || moneyShaped(m) {
				r.unreadable = true
				if code == "A3" {
					r.denied = true
				}
				continue
			}
			r.codes = append(r.codes, reviewCode{system, code})
		}
	}
	if !found {
		r.unreadable = true
	}
}

// isURL: u is one of the canonical URLs, with or without a |version.
func isURL(u string, canonicals ...string) bool {
	if i := strings.IndexByte(u, '|'); i >= 0 {
		u = u[:i]
	}
	return slices.Contains(canonicals, u)
}

// datesOfService names, per resource type, the elements whose dates say when the service was given.
// Paths are dot-separated element names ("context.period", "item.serviced[x]"); "[x]" reads every type of
// the choice that is a date: Date, DateTime, Instant (a date), Period (start and end), Timing (event). The
// other types of a choice (Age, Range, String, Duration, CodeableConcept) carry no date and are not read.
// A bare element is a date (a JSON string) or a Period (an object).
type datesOfService struct {
	elements []string
	fallback []string // read only when elements give no date (claims: created, as servedSince does)
}

// servedWithinYears: the resource's latest date of service is on or after the decision time's UTC calendar
// date, years back (time.AddDate: 2028-02-29 less 5 years is 2023-03-01). Each date counts as the last
// calendar day it covers, at its own precision: "2021" as 2021-12-31, "2021-11" as 2021-11-30, a dateTime as
// its calendar date in the zone it was written in (fhir.ParseDate) — so a year or month counts when any
// part of it is inside the window, and a date exactly years back is inside. No date at all, or any date that
// cannot be read (fhir.ParseDate, wrong JSON type, inside an element the money removal takes away), fails
// closed.
func servedWithinYears(res map[string]any, d datesOfService, now time.Time, years int) bool {
	latest, ok := latestDay(res, d.elements)
	if !ok {
		return false
	}
	if latest.IsZero() {
		if latest, ok = latestDay(res, d.fallback); !ok || latest.IsZero() {
			return false
		}
	}
	y, m, day := now.UTC().AddDate(-years, 0, 0).Date()
	return !latest.Before(time.Date(y, m, day, 0, 0, 0, 0, time.UTC))
}

// latestDay returns the last calendar day covered by the dates at paths (zero when there are none); ok is
// false when one cannot be read.
func latestDay(res map[string]any, paths []string) (latest time.Time, ok bool) {
	var dates []string
	for _, p := range paths {
		if !collectDates(res, strings.Split(p, "."), &dates) {
			return time.Time{}, false
		}
	}
	for _, s := range dates {
		_, end, err := fhir.ParseDate(s)
		if err != nil {
			return time.Time{}, false
		}
		y, m, d := end.Add(-time.Nanosecond).Date() // in the zone it was written in
		if day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC); day.After(latest) {
			latest = day
		}
	}
	return latest, true
}

// collectDates appends the dates at path below m; false when an element on the way has the wrong JSON type
// or is money (stripMoney would remove it, and the next pass would find no date).
func collectDates(m map[string]any, path []string, dates *[]string) bool {
	key := path[0]
	if base, choice := strings.CutSuffix(key, "[x]"); choice && len(path) == 1 {
		for k, v := range m {
			typ, ok := strings.CutPrefix(k, base)
			if !ok || typ == "" || typ[0] < 'A' || typ[0] > 'Z' {
				continue
			}
			if isMoney(k, v) {
				return false
			}
			switch typ {
			case "Date", "DateTime", "Instant":
				s, ok := v.(string)
				if !ok {
					return false
				}
				*dates = append(*dates, s)
			case "Period":
				if !periodDates(v, dates) {
					return false
				}
			case "Timing":
				t, ok := v.(map[string]any)
				if !ok || moneyShaped(t) {
					return false
				}
				if ev, present := t["event"]; present {
					arr, ok := ev.([]any)
					if !ok {
						return false
					}
					for _, e := range arr {
						s, ok := e.(string)
						if !ok {
							return false
						}
						*dates = append(*dates, s)
					}
				}
			}
		}
		return true
	}
	v, present := m[key]
	if !present {
		return true
	}
	if isMoney(key, v) {
		return false
	}
	if len(path) == 1 {
		if s, ok := v.(string); ok {
			*dates = append(*dates, s)
			return true
		}
		return periodDates(v, dates)
	}
	switch t := v.(type) {
	case map[string]any:
		return !moneyShaped(t) && collectDates(t, path[1:], dates)
	case []any:
		for _, e := range t {
			em, ok := e.(map[string]any)
			if !ok || moneyShaped(em) || !collectDates(em, path[1:], dates) {
				return false
			}
		}
		return true
	}
	return false
}

// periodDates appends a Period's start and end (R4 Period: the end "includes any matching date/time").
func periodDates(v any, dates *[]string) bool {
	p, ok := v.(map[string]any)
	if !ok || moneyShaped(p) {
		return false
	}
	for _, k := range []string{"start", "end"} {
		if e, present := p[k]; present {
			s, ok := e.(string)
			if !ok {
				return false
			}
			*dates = append(*dates, s)
		}
	}
	return true
}
