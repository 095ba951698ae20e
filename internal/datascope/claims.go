package datascope

import (
	"regexp"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

// Code systems the rules look at.
const (
	claimTypeSystem = "http://terminology.hl7.org/CodeSystem/claim-type"
	subTypeSystem   = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBInstitutionalClaimSubType"
	ndcSystem       = "http://hl7.org/fhir/sid/ndc"
	rxNormSystem    = "http://www.nlm.nih.gov/research/umls/rxnorm"
	carinProfiles   = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/C4BB-ExplanationOfBenefit"
	// requestedService: PAS Claim.item extension naming the ServiceRequest, DeviceRequest, MedicationRequest
	// or NutritionOrder the line asks for.
	requestedServiceExt = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-requestedService"
	pdexPriorAuth       = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-priorauthorization"
)

// X12 service type codes (element 1365) for pharmacy and prescription drugs, in the systems PAS (005010)
// and the seed use.
var (
	serviceTypeSystems = []string{"https://codesystem.x12.org/005010/1365", "https://x12.org/codes/service-type-codes"}
	drugServiceTypes   = []string{"88", "89", "90", "91", "92"}
	hcpcsSystems       = []string{"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"}
	// HCPCS Level II J codes: drugs administered other than by mouth (medical-benefit drugs are drugs too).
	hcpcsDrug = regexp.MustCompile(`^J[0-9]{4}$`)
)

// isPriorAuth: a prior authorization or predetermination (Claim, ClaimResponse and ExplanationOfBenefit
// all carry use; PDex pdex-priorauthorization and PAS claims say preauthorization).
func isPriorAuth(res map[string]any) bool {
	use, _ := res["use"].(string)
	return use == "preauthorization" || use == "predetermination"
}

// servedSince: the earliest date of service is on or after cutoff (YYYY-MM-DD), compared as the calendar date
// its author wrote. Dates of service are billablePeriod.start, item/addItem servicedDate and
// servicedPeriod.start, and ClaimResponse.preAuthPeriod.start; created counts only when none is given. A
// resource with no date at all, or one that cannot be read (fhir.ParseDate), fails closed.
func servedSince(res map[string]any, cutoff string) bool {
	var dates []string
	str := func(v any) {
		if s, ok := v.(string); ok {
			dates = append(dates, s)
		}
	}
	start := func(p any) {
		if m, ok := p.(map[string]any); ok {
			str(m["start"])
		}
	}
	start(res["billablePeriod"])
	start(res["preAuthPeriod"])
	for _, key := range []string{"item", "addItem"} {
		for _, it := range objects(res[key]) {
			str(it["servicedDate"])
			start(it["servicedPeriod"])
		}
	}
	if len(dates) == 0 {
		str(res["created"])
	}
	if len(dates) == 0 {
		return false
	}
	c, _, err := fhir.ParseDate(cutoff)
	if err != nil {
		return false
	}
	for _, s := range dates {
		t, _, err := fhir.ParseDate(s)
		if err != nil {
			return false
		}
		y, m, d := t.Date() // in the zone it was written in
		if time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Before(c) {
			return false
		}
	}
	return true
}

// isDrug: a claim or prior authorization for a drug is of type pharmacy, or one of its lines (item,
// addItem, detail, subDetail) names a drug as product or service (NDC, RxNorm, an HCPCS J code), is of a
// pharmacy or prescription drug service type, or requests a MedicationRequest (PAS requestedService), or it
// contains a Medication or MedicationRequest.
func isDrug(res map[string]any) bool {
	if hasCoding(res["type"], claimTypeSystem, "pharmacy") {
		return true
	}
	for _, c := range objects(res["contained"]) {
		if rt, _ := c["resourceType"].(string); rt == "Medication" || rt == "MedicationRequest" {
			return true
		}
	}
	drug := false
	var walk func(lines []map[string]any)
	walk = func(lines []map[string]any) {
		for _, l := range lines {
			drug = drug || drugLine(l)
			walk(objects(l["detail"]))
			walk(objects(l["subDetail"]))
		}
	}
	walk(objects(res["item"]))
	walk(objects(res["addItem"]))
	return drug
}

func drugLine(l map[string]any) bool {
	ps := l["productOrService"]
	if hasSystem(ps, ndcSystem) || hasSystem(ps, rxNormSystem) {
		return true
	}
	for _, c := range codings(ps) {
		code, _ := c["code"].(string)
		for _, s := range hcpcsSystems {
			if c["system"] == s && hcpcsDrug.MatchString(code) {
				return true
			}
		}
	}
	for _, s := range serviceTypeSystems {
		for _, code := range drugServiceTypes {
			if hasCoding(l["category"], s, code) {
				return true
			}
		}
	}
	for _, e := range objects(l["extension"]) {
		if e["url"] != requestedServiceExt {
			continue
		}
		ref, _ := e["valueReference"].(map[string]any)
		r, _ := ref["reference"].(string)
		if t, _ := ref["type"].(string); t == "MedicationRequest" || strings.HasPrefix(r, "MedicationRequest/") ||
			strings.Contains(r, "/MedicationRequest/") {
			return true
		}
	}
	return false
}

// priorAuthWithoutAmounts removes every amount from a prior authorization (ExplanationOfBenefit) nested in
// another resource (contained, a Parameters or Bundle entry) and, when any went, its claim to PDex
// pdex-priorauthorization (any version), which requires some (item.adjudication:adjudicationamounttype.amount
// 1..1). Only the resource the API returns gets the precise rule (priorAuthWithoutFinance): inside another
// resource money goes as everywhere else, whatever holds it.
func priorAuthWithoutAmounts(eob map[string]any) bool {
	if !stripMoney(eob, 0) {
		return false
	}
	dropPDexClaim(eob)
	return true
}
