// Package datascope applies an API's data scope (CMS-0057-F: which claims an API may return, and with which
// elements) to the resources of an upstream answer.
package datascope

import (
	"strings"
	"time"
)

// Scopes, as the policy names them in its obligations (policies/*.rego "data_scope").
const (
	PatientAccess  = "patient-access"
	ProviderAccess = "provider-access"
)

// ServiceCutoff: CMS-0057-F makes claims with dates of service on or after 2016-01-01 available (FHIR-NOTES,
// "time window"); earlier ones are not returned.
const ServiceCutoff = "2016-01-01"

// Code systems the rules look at.
const (
	claimTypeSystem = "http://terminology.hl7.org/CodeSystem/claim-type"
	subTypeSystem   = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBInstitutionalClaimSubType"
	ndcSystem       = "http://hl7.org/fhir/sid/ndc"
	rxNormSystem    = "http://www.nlm.nih.gov/research/umls/rxnorm"
	carinProfiles   = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/C4BB-ExplanationOfBenefit"
)

// Apply applies scope to one decoded resource: keep is false when the resource must not leave, changed is
// true when it was modified in place (the caller re-encodes). The empty scope and PatientAccess leave every
// resource as it is: members see their own cost-sharing. now is the time of the decision (windows relative to
// it, such as Payer-to-Payer's five years, are not implemented yet).
//
// A scope fhirwall does not know withholds every ExplanationOfBenefit rather than return claims under rules
// nobody wrote; other resource types pass.
func Apply(scope string, resource map[string]any, now time.Time) (keep, changed bool) {
	_ = now
	if rt, _ := resource["resourceType"].(string); rt != "ExplanationOfBenefit" {
		return true, false
	}
	switch scope {
	case "", PatientAccess:
		return true, false
	case ProviderAccess:
		return providerAccessEOB(resource)
	default:
		return false, false
	}
}

// providerAccessEOB: Provider Access returns claims from 2016 on, no prior authorizations for drugs, and
// claims without provider remittance or enrollee cost-sharing (CARIN BB 2.0.0 non-financial profiles).
func providerAccessEOB(eob map[string]any) (keep, changed bool) {
	if !servedSince(eob, ServiceCutoff) {
		return false, false
	}
	if use, _ := eob["use"].(string); use == "preauthorization" || use == "predetermination" {
		// Prior authorizations (PDex pdex-priorauthorization) are not claims: CARIN BB fixes
		// ExplanationOfBenefit.use to "claim", so there is no non-financial profile to map them to. Their
		// amounts are the requested and authorized amounts, neither enrollee cost-sharing nor provider
		// remittance, and PDex needs them to carry the decision (item.adjudication.extension:reviewAction
		// sits on the amount entry), so they pass unchanged unless they are for drugs.
		return !isDrug(eob), false
	}
	return true, nonFinancial(eob)
}

// servedSince: the earliest date of service (billablePeriod.start, item.servicedDate,
// item.servicedPeriod.start; created when none is given) is on or after cutoff. A date that cannot be read
// fails closed.
func servedSince(eob map[string]any, cutoff string) bool {
	var dates []string
	if bp, ok := eob["billablePeriod"].(map[string]any); ok {
		if s, ok := bp["start"].(string); ok {
			dates = append(dates, s)
		}
	}
	for _, it := range objects(eob["item"]) {
		if s, ok := it["servicedDate"].(string); ok {
			dates = append(dates, s)
		}
		if p, ok := it["servicedPeriod"].(map[string]any); ok {
			if s, ok := p["start"].(string); ok {
				dates = append(dates, s)
			}
		}
	}
	if len(dates) == 0 {
		s, ok := eob["created"].(string)
		if !ok {
			return false
		}
		dates = append(dates, s)
	}
	for _, s := range dates {
		d, ok := earliestDay(s)
		if !ok || d < cutoff {
			return false
		}
	}
	return true
}

// earliestDay turns a FHIR date or dateTime (R4 §2.24.0.2: YYYY, YYYY-MM, YYYY-MM-DD, or a dateTime) into
// the first day it may mean, as YYYY-MM-DD, so that "2015-12" is before 2016-01-01 and "2016" is not.
func earliestDay(s string) (string, bool) {
	if t, _, ok := strings.Cut(s, "T"); ok {
		s = t
	}
	var layout string
	switch len(s) {
	case 4:
		layout, s = "2006-01-02", s+"-01-01"
	case 7:
		layout, s = "2006-01-02", s+"-01"
	case 10:
		layout = "2006-01-02"
	default:
		return "", false
	}
	if _, err := time.Parse(layout, s); err != nil {
		return "", false
	}
	return s, true
}

// isDrug: a prior authorization for a drug is of type pharmacy or names a drug code (NDC, RxNorm) as a
// product or service.
func isDrug(eob map[string]any) bool {
	if hasCoding(eob["type"], claimTypeSystem, "pharmacy") {
		return true
	}
	var drug bool
	var walk func(lines []map[string]any)
	walk = func(lines []map[string]any) {
		for _, l := range lines {
			if hasSystem(l["productOrService"], ndcSystem) || hasSystem(l["productOrService"], rxNormSystem) {
				drug = true
			}
			walk(objects(l["detail"]))
			walk(objects(l["subDetail"]))
		}
	}
	walk(objects(eob["item"]))
	walk(objects(eob["addItem"]))
	return drug
}

func objects(v any) []map[string]any {
	arr, _ := v.([]any)
	out := make([]map[string]any, 0, len(arr))
	for _, e := range arr {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func codings(cc any) []map[string]any {
	m, _ := cc.(map[string]any)
	return objects(m["coding"])
}

func hasCoding(cc any, system, code string) bool {
	for _, c := range codings(cc) {
		if c["system"] == system && c["code"] == code {
			return true
		}
	}
	return false
}

func hasSystem(cc any, system string) bool {
	for _, c := range codings(cc) {
		if c["system"] == system {
			return true
		}
	}
	return false
}
