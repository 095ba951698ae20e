// Package membermatch builds the request bodies a new payer sends to the Payer-to-Payer API, for the suites
// and benchmarks that send them (test/payertopayer, test/adversarial, test/bench/bulkmatch): an HRex 1.0.0
// member-match-in Parameters, a PDex 2.1.0 multi-member-match-bundle-in Parameters, and the PDex Consent
// (opt-in) each member carries.
package membermatch

import (
	"encoding/json"
	"time"
)

// The HRex consent policies (ValueSet hrex-consent-policy): #regular excludes data labelled sensitive.
const (
	PolicyRegular   = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#regular"
	PolicySensitive = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html#sensitive"
)

// OldPayer is how a new payer names this (the old) payer: by an identifier, as the HRex examples do.
var OldPayer = map[string]any{"identifier": map[string]any{"system": "https://fhirwall.example/payer-id", "value": "FWPAYER-A"},
	"display": "Old Health Plan (payer A)"}

func coding(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

// Consent is a PDex pdex-consent: the member (Patient/1 of the request) permits the old payer (performer) to
// disclose to recipient (IRCP, a reference such as Organization/payer-b) under policy, from start to end.
func Consent(recipient, policy string, start, end time.Time) map[string]any {
	return map[string]any{
		"resourceType":    "Consent",
		"status":          "active",
		"scope":           coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"),
		"category":        []any{coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IDSCL")},
		"patient":         map[string]any{"reference": "Patient/1"},
		"performer":       []any{map[string]any{"reference": "Patient/1"}},
		"sourceReference": map[string]any{"reference": "http://example.org/DocumentReference/someconsent.pdf"},
		"policy":          []any{map[string]any{"uri": policy}},
		"provision": map[string]any{
			"type":   "permit",
			"period": map[string]any{"start": start.Format("2006-01-02"), "end": end.Format("2006-01-02")},
			"actor": []any{
				map[string]any{"role": coding("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "performer"), "reference": OldPayer},
				map[string]any{"role": coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP"),
					"reference": map[string]any{"reference": recipient}},
			},
			"action": []any{coding("http://terminology.hl7.org/CodeSystem/consentaction", "disclose")},
		},
	}
}

// OptIn is Consent from yesterday for a year.
func OptIn(recipient, policy string) map[string]any {
	now := time.Now().UTC()
	return Consent(recipient, policy, now.AddDate(0, 0, -1), now.AddDate(1, 0, 0))
}

// Member is one member as a new payer knows them: name (a FHIR HumanName list), birth date, gender and the
// member id the old payer issued (system idSystem).
type Member struct {
	Name      any
	BirthDate string
	Gender    string
	IDSystem  string
	MemberID  string
}

// Parts are the member's MemberPatient (US Core demographics with the member id, type MB and HRex UMB),
// CoverageToMatch (the old coverage: subscriber id and identifier) and Consent.
func (m Member) Parts(consent map[string]any) []any {
	mb := []any{
		map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"},
		map[string]any{"system": "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp", "code": "UMB"},
	}
	patient := map[string]any{
		"resourceType": "Patient", "id": "1",
		"identifier": []any{map[string]any{"type": map[string]any{"coding": mb}, "system": m.IDSystem, "value": m.MemberID}},
		"name":       m.Name, "birthDate": m.BirthDate, "gender": m.Gender,
	}
	coverage := map[string]any{
		"resourceType": "Coverage", "id": "9876B1",
		"identifier":   []any{map[string]any{"type": map[string]any{"coding": mb[:1]}, "system": m.IDSystem, "value": m.MemberID}},
		"status":       "active",
		"subscriberId": m.MemberID,
		"beneficiary":  map[string]any{"reference": "Patient/1"},
		"payor":        []any{OldPayer},
	}
	return []any{
		map[string]any{"name": "MemberPatient", "resource": patient},
		map[string]any{"name": "CoverageToMatch", "resource": coverage},
		map[string]any{"name": "Consent", "resource": consent},
	}
}

// Name is a HumanName list of one official name.
func Name(family, given string) []any {
	return []any{map[string]any{"family": family, "given": []any{given}}}
}

// In is an HRex member-match-in Parameters of parts.
func In(parts []any) []byte {
	return mustJSON(map[string]any{"resourceType": "Parameters", "parameter": parts})
}

// Bulk is a PDex multi-member-match-bundle-in Parameters: one MemberBundle per member.
func Bulk(members ...[]any) []byte {
	params := make([]any, 0, len(members))
	for _, m := range members {
		params = append(params, map[string]any{"name": "MemberBundle", "part": m})
	}
	return mustJSON(map[string]any{"resourceType": "Parameters", "parameter": params})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and slices always encode
	}
	return b
}
