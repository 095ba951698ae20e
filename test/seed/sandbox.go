package main

import (
	"encoding/json"
	"strings"
)

// Sandbox data (issue 16): one synthetic member for the sandbox APIs (patient-access-sandbox,
// provider-access-sandbox) and a sandbox provider organisation whose attribution Group lists them. Every
// resource carries, besides the seed tag, the tag fhirwall holds sandbox answers to
// (internal/datascope.SandboxTag); no real member's resource does. The realm's user sandbox-sam has patient
// SandboxMember.
const (
	EnvironmentSystem = "https://fhirwall.dev/CodeSystem/environment"
	SandboxCode       = "sandbox"

	SandboxMember = "sandbox-01"
	SandboxOrg    = "sandbox-org"
	SandboxPract  = "sandbox-pract"
	// SandboxPayer is the payer a sandbox Payer-to-Payer app acts for (its registry org): the new payer the
	// sandbox member opted in to (SandboxOptIn).
	SandboxPayer     = "sandbox-payer"
	SandboxPractRole = "sandbox-pract-role"
	SandboxOptIn     = "payer-to-payer-opt-in-sandbox-01"
)

// sandboxN is the member number the sandbox member is generated as, then renamed (sandboxed): past the real
// members, so no generated id or number is shared with theirs.
const sandboxN = NumMembers + 1

var sandboxOrg = org{SandboxOrg, "Sandbox Medical Group", "1999999992", "412-555-0199", "1 Sandbox Lane", "Pittsburgh", "PA", "15213"}

var sandboxPract = pract{SandboxPract, "Sasha", "Sandbox", "female", "1888888884", SandboxOrg, "207Q00000X", "Family Medicine Physician"}

// sandbox generates the sandbox member as a member (Patient, Coverage, claims, conditions, observations),
// its organisation, practitioner and attribution Group, every id and reference renamed away from the real
// members' and their providers'.
func (g *gen) sandbox() {
	first := len(g.out)
	m := member{N: sandboxN, Given: "Sam", Family: "Sandbox", Gender: "male", BirthDate: "1985-04-12",
		Line: "1 Sandbox Lane", City: "Pittsburgh", State: "PA", Zip: "15213"}
	g.member(m)
	o, p := providerOrgs[orgIndexFor(sandboxN)], practFor(orgIndexFor(sandboxN), sandboxN)
	g.add(1, "organization-provider", vars{"ID": sandboxOrg.ID, "NPI": sandboxOrg.NPI, "NAME": sandboxOrg.Name, "PHONE": sandboxOrg.Phone,
		"LINE": sandboxOrg.Line, "CITY": sandboxOrg.City, "STATE": sandboxOrg.State, "ZIP": sandboxOrg.Zip})
	g.add(1, "practitioner", vars{"ID": sandboxPract.ID, "NPI": sandboxPract.NPI, "FAMILY": sandboxPract.Family,
		"GIVEN": sandboxPract.Given, "GENDER": sandboxPract.Gender})
	ext := []any{
		map[string]any{"url": ATRAttributedProv, "valueReference": map[string]any{"reference": "Practitioner/" + SandboxPract}},
		map[string]any{"url": ATRCoverageRef, "valueReference": map[string]any{"reference": "Coverage/" + CoverageID(sandboxN)}},
	}
	// The sandbox clinician acts for the sandbox organisation (Prior Authorization sandbox with a user token).
	g.add(2, "practitionerrole", vars{"ID": SandboxPractRole, "PRACTITIONER": SandboxPract, "ORGANIZATION": SandboxOrg,
		"TAXONOMY": sandboxPract.Taxonomy, "TAXONOMY_DISPLAY": sandboxPract.TaxonomyDisplay, "PHONE": sandboxOrg.Phone})
	// Payer-to-Payer sandbox: a synthetic new payer and the member's opt-in to it (what a $member-match
	// would store), so a sandbox payer app reads the member's data with or without a match first. The period
	// is fixed (no clock in the seed) and long.
	g.add(1, "organization-payer", vars{"ID": SandboxPayer, "PAYER_ID": "FWSBPAYER", "NAME": "Sandbox New Health Plan",
		"PHONE": "412-555-0198", "LINE": "2 Sandbox Lane", "CITY": "Pittsburgh", "STATE": "PA", "ZIP": "15213"})
	g.add(4, "consent-payer-to-payer-opt-in", vars{"ID": SandboxOptIn, "PATIENT": MemberID(sandboxN), "OLD_PAYER": PayerID,
		"RECIPIENT": SandboxPayer, "SOURCE": "Sam Sandbox's signed opt-in (synthetic)", "START": "2025-01-01", "END": "2035-12-31"})
	g.add(4, "group-attribution", vars{"ID": GroupID(SandboxOrg), "NPI": sandboxOrg.NPI, "ORG": SandboxOrg, "ORG_NAME": sandboxOrg.Name,
		"QUANTITY": float64(1), "MEMBERS": []any{map[string]any{"extension": ext, "entity": map[string]any{"reference": "Patient/" + MemberID(sandboxN)},
			"period": map[string]any{"start": "2024-01-01"}, "inactive": false}}})
	if g.err != nil {
		return
	}
	rename := strings.NewReplacer(
		`"`+MemberID(sandboxN), `"`+SandboxMember, // ids: member-25, and references Patient/member-25
		"/"+MemberID(sandboxN)+`"`, "/"+SandboxMember+`"`,
		"-"+MemberID(sandboxN), "-"+SandboxMember, // coverage-member-25, eob-member-25-1, …
		MemberNumber(sandboxN), "FWSB0001",
		`"Organization/`+o.ID+`"`, `"Organization/`+SandboxOrg+`"`,
		`"Practitioner/`+p.ID+`"`, `"Practitioner/`+SandboxPract+`"`,
		`"`+o.NPI+`"`, `"`+sandboxOrg.NPI+`"`, `"`+p.NPI+`"`, `"`+sandboxPract.NPI+`"`,
		o.Name, sandboxOrg.Name, p.Given+" "+p.Family, sandboxPract.Given+" "+sandboxPract.Family,
	)
	for i := first; i < len(g.out); i++ {
		if g.out[i], g.err = sandboxed(g.out[i], rename); g.err != nil {
			return
		}
	}
}

// sandboxed renames r's ids and references with rename and adds the sandbox tag beside the seed tag.
func sandboxed(r Resource, rename *strings.Replacer) (Resource, error) {
	raw, err := json.Marshal(r.Body)
	if err != nil {
		return r, err
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(rename.Replace(string(raw))), &body); err != nil {
		return r, err
	}
	meta := body["meta"].(map[string]any)
	meta["tag"] = append(meta["tag"].([]any), map[string]any{"system": EnvironmentSystem, "code": SandboxCode, "display": "synthetic sandbox data"})
	return Resource{Type: r.Type, ID: body["id"].(string), Tier: r.Tier, Body: body}, nil
}

// IsSandbox reports whether r is sandbox data.
func IsSandbox(r Resource) bool {
	meta, _ := r.Body["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, t := range tags {
		if c, _ := t.(map[string]any); c["system"] == EnvironmentSystem && c["code"] == SandboxCode {
			return true
		}
	}
	return false
}
