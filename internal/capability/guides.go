package capability

import (
	"maps"
	"slices"
)

// guide is one implementation guide as a CapabilityStatement names it: its ImplementationGuide canonical
// (implementationGuide) and, per type, the profiles a server holding its data supports (supportedProfile).
// Profiles are the concrete (non-abstract) ones the guide's own server CapabilityStatement lists; every URL
// is checked against the packages in test/fixtures/fhir-packages by TestGuideProfilesExistInTheirPackages.
type guide struct {
	ImplementationGuide string
	Profiles            map[string][]string
}

const (
	carinBB = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/"
	usCore  = "http://hl7.org/fhir/us/core/StructureDefinition/"
	pas     = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
)

// carinCommon are the CARIN BB 2.0.0 profiles besides the EOB ones; the non-financial package has the same.
var carinCommon = map[string][]string{
	"Coverage":     {carinBB + "C4BB-Coverage"},
	"Patient":      {carinBB + "C4BB-Patient"},
	"Organization": {carinBB + "C4BB-Organization"},
	"Practitioner": {carinBB + "C4BB-Practitioner"},
}

func withCarinCommon(eob ...string) map[string][]string {
	m := maps.Clone(carinCommon)
	for _, p := range eob {
		m["ExplanationOfBenefit"] = append(m["ExplanationOfBenefit"], carinBB+p)
	}
	return m
}

// guides are the guides configuration may name (apis[].guides).
var guides = map[string]guide{
	// CARIN BB 2.0.0 (hl7.fhir.us.carin-bb-2.0.0.tgz): Patient Access claims, with cost-sharing.
	"carin-bb-2.0.0": {
		ImplementationGuide: "http://hl7.org/fhir/us/carin-bb/ImplementationGuide/hl7.fhir.us.carin-bb|2.0.0",
		Profiles: withCarinCommon("C4BB-ExplanationOfBenefit-Inpatient-Institutional", "C4BB-ExplanationOfBenefit-Outpatient-Institutional",
			"C4BB-ExplanationOfBenefit-Oral", "C4BB-ExplanationOfBenefit-Pharmacy", "C4BB-ExplanationOfBenefit-Professional-NonClinician"),
	},
	// CARIN BB 2.0.0's non-financial profiles (hl7.fhir.us.carin-bb-2.0.0-nonfinancial.tgz): Provider Access
	// claims, without provider remittance or enrollee cost-sharing (CMS-0057-F).
	"carin-bb-2.0.0-nonfinancial": {
		ImplementationGuide: "http://hl7.org/fhir/us/carin-bb/ImplementationGuide/hl7.fhir.us.carin-bb|2.0.0",
		Profiles: withCarinCommon("C4BB-ExplanationOfBenefit-Inpatient-Institutional-NonFinancial",
			"C4BB-ExplanationOfBenefit-Outpatient-Institutional-NonFinancial", "C4BB-ExplanationOfBenefit-Oral-NonFinancial",
			"C4BB-ExplanationOfBenefit-Pharmacy-NonFinancial", "C4BB-ExplanationOfBenefit-Professional-NonClinician-NonFinancial"),
	},
	// Da Vinci PAS 2.0.1 (hl7.fhir.us.davinci-pas-2.0.1.tgz), the version CMS-0057-F points to: the Claims
	// $submit (profile-claim, profile-claim-update) and $inquire (profile-claim-inquiry) accept. PAS 2.0.1
	// profiles no Subscription (its IntermediaryCapabilities lists Subscription without one).
	"davinci-pas-2.0.1": {
		ImplementationGuide: "http://hl7.org/fhir/us/davinci-pas/ImplementationGuide/hl7.fhir.us.davinci-pas|2.0.1",
		Profiles: map[string][]string{
			"Claim": {pas + "profile-claim", pas + "profile-claim-update", pas + "profile-claim-inquiry"},
		},
	},
	// US Core 6.1.0 (USCDI v3): the clinical types, as us-core-server lists them.
	"us-core-6.1.0": {
		ImplementationGuide: "http://hl7.org/fhir/us/core/ImplementationGuide/hl7.fhir.us.core|6.1.0",
		Profiles: map[string][]string{
			"AllergyIntolerance": {usCore + "us-core-allergyintolerance"},
			"CarePlan":           {usCore + "us-core-careplan"},
			"CareTeam":           {usCore + "us-core-careteam"},
			"Condition":          {usCore + "us-core-condition-encounter-diagnosis", usCore + "us-core-condition-problems-health-concerns"},
			"Coverage":           {usCore + "us-core-coverage"},
			"DiagnosticReport":   {usCore + "us-core-diagnosticreport-note", usCore + "us-core-diagnosticreport-lab"},
			"DocumentReference":  {usCore + "us-core-documentreference"},
			"Encounter":          {usCore + "us-core-encounter"},
			"Goal":               {usCore + "us-core-goal"},
			"Immunization":       {usCore + "us-core-immunization"},
			"Location":           {usCore + "us-core-location"},
			"MedicationRequest":  {usCore + "us-core-medicationrequest"},
			"Observation": {usCore + "us-core-observation-lab", usCore + "us-core-observation-clinical-result",
				usCore + "us-core-vital-signs", usCore + "us-core-blood-pressure", usCore + "us-core-bmi", usCore + "us-core-body-height",
				usCore + "us-core-body-weight", usCore + "us-core-body-temperature", usCore + "us-core-heart-rate",
				usCore + "us-core-respiratory-rate", usCore + "us-core-pulse-oximetry", usCore + "us-core-head-circumference",
				usCore + "head-occipital-frontal-circumference-percentile", usCore + "pediatric-bmi-for-age",
				usCore + "pediatric-weight-for-height", usCore + "us-core-smokingstatus", usCore + "us-core-simple-observation",
				usCore + "us-core-observation-screening-assessment", usCore + "us-core-observation-sexual-orientation",
				usCore + "us-core-observation-occupation", usCore + "us-core-observation-pregnancystatus",
				usCore + "us-core-observation-pregnancyintent"},
			"Organization":     {usCore + "us-core-organization"},
			"Patient":          {usCore + "us-core-patient"},
			"Practitioner":     {usCore + "us-core-practitioner"},
			"PractitionerRole": {usCore + "us-core-practitionerrole"},
			"Procedure":        {usCore + "us-core-procedure"},
		},
	},
}

func guideNames() []string { return slices.Sorted(maps.Keys(guides)) }

// profiles returns a type's supportedProfile: the first named guide with profiles for it wins, so CARIN
// BB's Patient (itself a US Core Patient) is listed on a claims API rather than both.
func profiles(names []string, resourceType string) []string {
	for _, n := range names {
		if p := guides[n].Profiles[resourceType]; len(p) > 0 {
			return p
		}
	}
	return nil
}
