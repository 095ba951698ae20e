package datascope

import "slices"

// Security labels (R4 §6.1.0.6, meta.security) that mark a resource as sensitive. PDex 2.x pdex-consent
// names two policies: #sensitive (share everything) and #regular (share only what is not sensitive); a
// member who chose #regular gets none of these.
const (
	confidentialitySystem = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	actCodeSystem         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// sensitiveLabels: per code system (its current URL, the R3-era hl7.org/fhir/v3 URL and the OID, which
// labels copied from older or CDA sources still use), the codes that make a resource sensitive.
var sensitiveLabels = func() map[string][]string {
	// v3-Confidentiality: R restricted, V very restricted. N (normal), L, M, U are not sensitive.
	confidentiality := []string{"R", "V"}
	actCode := []string{
		// _ActInformationSensitivityPolicy (every code under it in THO v3-ActCode, as the value set
		// v3-ActInformationSensitivityPolicy expands): behavioural health, substance use (ETH and its
		// children ETHUD, OPIOIDUD; SUD), mental health (MH, PSY, PSYTHPN, EMOTDIS), cognitive and
		// developmental disability, genetic disease, HIV/AIDS, STDs, sexuality and reproductive health,
		// pregnancy, sexual assault and domestic violence, military sexual trauma, violence, sickle cell,
		// identifier sensitivity, taboo and specially protected information. SOC (social services) is not in
		// the current expansion; it stays because labels written against older releases use it.
		"BH", "COGN", "DVD", "EMOTDIS", "ETH", "ETHUD", "GDIS", "HIV", "IDS", "MH", "MST", "OPIOIDUD",
		"PREGNANT", "PSY", "PSYTHPN", "SCA", "SDV", "SEX", "SICKLE", "SOC", "SPI", "STD", "SUD", "TBOO", "VIO",
		// _ActPrivacyLaw codes that, as a label, say the record falls under a law protecting it: 42 CFR
		// Part 2 (substance use disorder treatment records), 38 U.S.C. 7332 (VA records of drug and alcohol
		// abuse, HIV and sickle cell anemia), HIPAA psychotherapy notes.
		"42CFRPart2", "Title38Section7332", "HIPAAPsyNotes",
	}
	return map[string][]string{
		confidentialitySystem:                    confidentiality,
		"http://hl7.org/fhir/v3/Confidentiality": confidentiality,
		"urn:oid:2.16.840.1.113883.5.25":         confidentiality,
		actCodeSystem:                            actCode,
		"http://hl7.org/fhir/v3/ActCode":         actCode,
		"urn:oid:2.16.840.1.113883.5.4":          actCode,
	}
}()

// Sensitive reports whether res, or any resource nested in it (contained, Bundle.entry.resource,
// Parameters.parameter.resource, …), carries a meta.security label in sensitiveLabels. A coding from
// another system, or with another code, is not sensitive. A meta.security that cannot be read (meta not an
// object, security not an array, a coding not an object, a system or code that is not a string) counts as
// sensitive, and so does nesting deeper than can be walked (maxDepth): what cannot be checked fails closed.
//
// Call it on the resource as the server answered, before Apply: money removal deletes anything
// money-shaped, a malformed security coding too.
func Sensitive(res map[string]any) bool {
	if depthOver(res, maxDepth) {
		return true
	}
	sensitive := false
	eachResource(res, func(r map[string]any) {
		sensitive = sensitive || labelled(r)
	})
	return sensitive
}

func labelled(res map[string]any) bool {
	mv, present := res["meta"]
	if !present {
		return false
	}
	meta, ok := mv.(map[string]any)
	if !ok {
		return true
	}
	sv, present := meta["security"]
	if !present {
		return false
	}
	security, ok := sv.([]any)
	if !ok {
		return true
	}
	for _, e := range security {
		c, ok := e.(map[string]any)
		if !ok {
			return true
		}
		system, okSystem := c["system"].(string)
		code, okCode := c["code"].(string)
		_, hasSystem := c["system"]
		_, hasCode := c["code"]
		if (hasSystem && !okSystem) || (hasCode && !okCode) {
			return true
		}
		codes, known := sensitiveLabels[system]
		if !known {
			continue
		}
		if !hasCode {
			return true // a label of a sensitivity system without its code: which one cannot be read
		}
		if slices.Contains(codes, code) {
			return true
		}
	}
	return false
}
