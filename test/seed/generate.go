package main

import (
	"fmt"
	"time"
)

// Fixed identifiers other parts of fhirwall rely on (docs/CONVENTIONS-stack.md, test/seed/README.md).
const (
	SeedTagSystem = "https://fhirwall.example/seed"
	SeedTagCode   = "fhirwall-seed"

	MemberIDSystem     = "https://fhirwall.example/member-id"
	NPISystem          = "http://hl7.org/fhir/sid/us-npi"
	OptOutExtensionURL = "https://fhirwall.example/StructureDefinition/provider-access-opt-out"
	OptOutPolicyURI    = "https://fhirwall.example/policy/provider-access-opt-out"
	ATRAttributedProv  = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"
	ATRCoverageRef     = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-coverageReference"

	PayerID    = "payer-a"
	NumMembers = 24
)

// OptedOut lists the members who opted out of the CMS-0057-F Provider Access API.
var OptedOut = map[int]bool{5: true, 12: true, 20: true}

// Resource is one generated FHIR resource. Tier orders the transaction Bundles so that every
// reference points at a resource written by the same or an earlier Bundle.
type Resource struct {
	Type string
	ID   string
	Tier int
	Body map[string]any
}

func (r Resource) Ref() string { return r.Type + "/" + r.ID }

type org struct {
	ID, Name, NPI, Phone, Line, City, State, Zip string
}

type pract struct {
	ID, Given, Family, Gender, NPI, Org, Taxonomy, TaxonomyDisplay string
}

type member struct {
	N                      int
	Given, Family, Gender  string
	BirthDate              string
	Line, City, State, Zip string
}

type code struct{ Code, Display string }

type diagnosis struct {
	SNOMED, ICD10 code
}

var providerOrgs = []org{
	{"org-a", "Alder Medical Group", "1234567893", "412-555-0100", "100 Alder Way", "Pittsburgh", "PA", "15213"},
	{"org-b", "Birch Community Hospital", "1345678902", "717-555-0100", "200 Birch Avenue", "Harrisburg", "PA", "17101"},
	{"org-c", "Cedar Family Clinic", "1456789019", "215-555-0100", "300 Cedar Street", "Philadelphia", "PA", "19103"},
}

var payer = org{PayerID, "Fhirwall Demo Health Plan", "", "800-555-0199", "1 Payer Plaza", "Pittsburgh", "PA", "15222"}

// Two practitioners per provider organisation: pract-01/02 at org-a, 03/04 at org-b, 05/06 at org-c.
var practitioners = []pract{
	{"pract-01", "Grace", "Okafor", "female", "1567890128", "org-a", "207Q00000X", "Family Medicine Physician"},
	{"pract-02", "Marcus", "Bennett", "male", "1678901236", "org-a", "207R00000X", "Internal Medicine Physician"},
	{"pract-03", "Priya", "Raman", "female", "1789012345", "org-b", "207RE0101X", "Endocrinology, Diabetes & Metabolism Physician"},
	{"pract-04", "Thomas", "Nguyen", "male", "1890123452", "org-b", "208D00000X", "General Practice Physician"},
	{"pract-05", "Hannah", "Weiss", "female", "1901234561", "org-c", "207RC0000X", "Cardiovascular Disease Physician"},
	{"pract-06", "Carlos", "Mendoza", "male", "1012345678", "org-c", "207Q00000X", "Family Medicine Physician"},
}

var memberNames = [NumMembers][3]string{
	{"Ava", "Thompson", "female"}, {"Liam", "Garcia", "male"}, {"Olivia", "Martinez", "female"},
	{"Noah", "Robinson", "male"}, {"Emma", "Clark", "female"}, {"Elijah", "Rodriguez", "male"},
	{"Sophia", "Lewis", "female"}, {"James", "Lee", "male"}, {"Isabella", "Walker", "female"},
	{"Benjamin", "Hall", "male"}, {"Mia", "Allen", "female"}, {"Lucas", "Young", "male"},
	{"Charlotte", "Hernandez", "female"}, {"Henry", "King", "male"}, {"Amelia", "Wright", "female"},
	{"Alexander", "Lopez", "male"}, {"Harper", "Hill", "female"}, {"Daniel", "Scott", "male"},
	{"Evelyn", "Green", "female"}, {"Matthew", "Adams", "male"}, {"Abigail", "Baker", "female"},
	{"Samuel", "Nelson", "male"}, {"Emily", "Carter", "female"}, {"David", "Mitchell", "male"},
}

var cities = [][3]string{
	{"Pittsburgh", "PA", "15213"}, {"Harrisburg", "PA", "17101"}, {"Philadelphia", "PA", "19103"}, {"Erie", "PA", "16501"},
}

var problems = []diagnosis{
	{code{"44054006", "Diabetes mellitus type 2"}, code{"E11.9", "Type 2 diabetes mellitus without complications"}},
	{code{"59621000", "Essential hypertension"}, code{"I10", "Essential (primary) hypertension"}},
	{code{"195967001", "Asthma"}, code{"J45.909", "Unspecified asthma, uncomplicated"}},
	{code{"55822004", "Hyperlipidemia"}, code{"E78.5", "Hyperlipidemia, unspecified"}},
}

var encounterDiagnoses = []diagnosis{
	{code{"10509002", "Acute bronchitis"}, code{"J20.9", "Acute bronchitis, unspecified"}},
	{code{"44465007", "Sprain of ankle"}, code{"S93.409A", "Sprain of unspecified ligament of unspecified ankle, initial encounter"}},
	{code{"36971009", "Sinusitis"}, code{"J32.9", "Chronic sinusitis, unspecified"}},
	{code{"68566005", "Urinary tract infectious disease"}, code{"N39.0", "Urinary tract infection, site not specified"}},
}

// Claim kinds of the CARIN BB EOB profiles.
const (
	kindInpatient    = "inpatient"
	kindOutpatient   = "outpatient"
	kindProfessional = "professional"
	kindPharmacy     = "pharmacy"
)

var claimKinds = []string{kindInpatient, kindOutpatient, kindProfessional, kindPharmacy}

// Cents: base submitted charge and copay per claim kind.
var claimBase = map[string][2]int{
	kindInpatient:    {1200000, 25000},
	kindOutpatient:   {180000, 15000},
	kindProfessional: {25000, 2500},
	kindPharmacy:     {12000, 1000},
}

// PriorAuth is one PDex prior-authorization EOB (use = preauthorization).
type PriorAuth struct {
	Member   int
	Seq      int
	Drug     bool
	Decision string // approved (X12 306 A1), denied (A3), pended (A4)
	Start    string
	Expedite bool
}

// PriorAuths: drug and non-drug; approved, denied and pended; one before 2016-01-01 (member-04).
var PriorAuths = []PriorAuth{
	{1, 1, false, "approved", "2025-03-10", false},
	{1, 2, true, "approved", "2025-06-02", false},
	{2, 1, false, "pended", "2026-09-15", true},
	{2, 2, false, "denied", "2026-02-20", false},
	{3, 1, true, "pended", "2026-10-05", false},
	{4, 1, false, "approved", "2015-04-10", false},
	{5, 1, false, "approved", "2025-08-01", false},
}

func MemberID(n int) string        { return fmt.Sprintf("member-%02d", n) }
func MemberNumber(n int) string    { return fmt.Sprintf("FWM%04d", n) }
func CoverageID(n int) string      { return "coverage-" + MemberID(n) }
func EOBID(n, k int) string        { return fmt.Sprintf("eob-%s-%d", MemberID(n), k) }
func PriorAuthID(n, k int) string  { return fmt.Sprintf("priorauth-%s-%d", MemberID(n), k) }
func ConsentID(n int) string       { return "provider-access-opt-out-" + MemberID(n) }
func GroupID(orgID string) string  { return "attribution-" + orgID }
func PractRoleID(p string) string  { return "pract-role-" + p[len("pract-"):] }
func ClaimCount(n int) int         { return 2 + n%3 }
func ClaimKind(n, k int) string    { return claimKinds[(n+k-1)%4] }
func orgIndexFor(n int) int        { return (n - 1) % 3 }
func practFor(orgIdx, n int) pract { return practitioners[orgIdx*2+n%2] }

// AttributedOrgs returns the provider organisations member n is attributed to: everyone to one,
// every fourth member (04, 08, ... 24) to a second one.
func AttributedOrgs(n int) []int {
	out := []int{orgIndexFor(n)}
	if n%4 == 0 {
		out = append(out, n%3)
	}
	return out
}

func members() []member {
	out := make([]member, 0, NumMembers)
	for n := 1; n <= NumMembers; n++ {
		nm := memberNames[n-1]
		c := cities[n%len(cities)]
		out = append(out, member{
			N: n, Given: nm[0], Family: nm[1], Gender: nm[2],
			BirthDate: fmt.Sprintf("%04d-%02d-%02d", 1950+(n*7)%55, (n*5)%12+1, (n*11)%28+1),
			Line:      fmt.Sprintf("%d Maple Street", 10+n*7), City: c[0], State: c[1], Zip: c[2],
		})
	}
	return out
}

// ClaimStart returns the first date of service of claim k (1-based) of member n: claim 1 is before
// 2016-01-01, claim 2 is 2017-2020 (after 2016 but older than five years), claims 3 and 4 are recent.
func ClaimStart(n, k int) time.Time {
	switch k {
	case 1:
		return day(2012+n%4, n%12+1, 10)
	case 2:
		return day(2017+n%4, n%12+1, 12)
	case 3:
		return day(2023+n%3, n%12+1, 14)
	default:
		return day(2026, n%5+1, 16)
	}
}

func day(y, m, d int) time.Time { return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC) }
func ymd(t time.Time) string    { return t.Format("2006-01-02") }
func instant(t time.Time) string {
	return t.Format("2006-01-02T15:04:05Z07:00")
}

// Generate builds the whole seed set. It is a pure function: no clock, no randomness, no I/O except
// reading the embedded templates.
func Generate() ([]Resource, error) {
	g := &gen{}
	g.orgs()
	g.practitionersAndRoles()
	for _, m := range members() {
		g.member(m)
	}
	for _, pa := range PriorAuths {
		g.priorAuth(pa)
	}
	g.groups()
	for n := 1; n <= NumMembers; n++ {
		if OptedOut[n] {
			g.consent(n)
		}
	}
	g.sandbox()
	if g.err != nil {
		return nil, g.err
	}
	return g.out, nil
}

type gen struct {
	out []Resource
	err error
}

func (g *gen) add(tier int, tmpl string, v vars) {
	if g.err != nil {
		return
	}
	body, err := fill(tmpl, v)
	if err != nil {
		g.err = err
		return
	}
	meta, _ := body["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		body["meta"] = meta
	}
	meta["tag"] = []any{map[string]any{"system": SeedTagSystem, "code": SeedTagCode, "display": "fhirwall seed data"}}
	g.out = append(g.out, Resource{Type: body["resourceType"].(string), ID: body["id"].(string), Tier: tier, Body: body})
}

func (g *gen) orgs() {
	g.add(1, "organization-payer", vars{"ID": payer.ID, "PAYER_ID": "FWPAYER-A", "NAME": payer.Name, "PHONE": payer.Phone,
		"LINE": payer.Line, "CITY": payer.City, "STATE": payer.State, "ZIP": payer.Zip})
	for _, o := range providerOrgs {
		g.add(1, "organization-provider", vars{"ID": o.ID, "NPI": o.NPI, "NAME": o.Name, "PHONE": o.Phone,
			"LINE": o.Line, "CITY": o.City, "STATE": o.State, "ZIP": o.Zip})
	}
}

func (g *gen) practitionersAndRoles() {
	for _, p := range practitioners {
		g.add(1, "practitioner", vars{"ID": p.ID, "NPI": p.NPI, "FAMILY": p.Family, "GIVEN": p.Given, "GENDER": p.Gender})
	}
	for i, p := range practitioners {
		g.add(2, "practitionerrole", vars{"ID": PractRoleID(p.ID), "PRACTITIONER": p.ID, "ORGANIZATION": p.Org,
			"TAXONOMY": p.Taxonomy, "TAXONOMY_DISPLAY": p.TaxonomyDisplay, "PHONE": fmt.Sprintf("412-555-01%02d", 10+i)})
	}
}

func (g *gen) member(m member) {
	n, id := m.N, MemberID(m.N)
	birthsex := "F"
	if m.Gender == "male" {
		birthsex = "M"
	}
	g.add(2, "patient", vars{"ID": id, "BIRTHSEX": birthsex, "MEMBER_ID": MemberNumber(n), "PAYER": PayerID,
		"FAMILY": m.Family, "GIVEN": m.Given, "PHONE": fmt.Sprintf("555-01%02d", n), "GENDER": m.Gender,
		"BIRTHDATE": m.BirthDate, "LINE": m.Line, "CITY": m.City, "STATE": m.State, "ZIP": m.Zip})
	g.add(3, "coverage", vars{"ID": CoverageID(n), "MEMBER_ID": MemberNumber(n), "PAYER": PayerID, "PATIENT": id,
		"PERIOD_START": "2010-01-01"})

	oi := orgIndexFor(n)
	o, p := providerOrgs[oi], practFor(oi, n)
	prob, encdx := problems[(n-1)%len(problems)], encounterDiagnoses[(n-1)%len(encounterDiagnoses)]

	for k := 1; k <= ClaimCount(n); k++ {
		g.claim(n, k, o, p, encdx)
	}

	probOnset := day(2014, n%12+1, 15)
	if n%2 == 0 {
		probOnset = day(2019, n%12+1, 15)
	}
	g.add(4, "condition-problem", vars{"ID": "condition-" + id + "-problem", "PATIENT": id, "PRACTITIONER": p.ID,
		"ONSET": ymd(probOnset), "SNOMED": prob.SNOMED.Code, "SNOMED_DISPLAY": prob.SNOMED.Display,
		"ICD10": prob.ICD10.Code, "ICD10_DISPLAY": prob.ICD10.Display})
	dxOnset := day(2024, n%12+1, 3)
	g.add(4, "condition-encounter-diagnosis", vars{"ID": "condition-" + id + "-encounter-dx", "PATIENT": id, "PRACTITIONER": p.ID,
		"ONSET": ymd(dxOnset), "ABATEMENT": ymd(dxOnset.AddDate(0, 0, 14)), "SNOMED": encdx.SNOMED.Code,
		"SNOMED_DISPLAY": encdx.SNOMED.Display, "ICD10": encdx.ICD10.Code, "ICD10_DISPLAY": encdx.ICD10.Display})

	labDate := day(2015, n%12+1, 20)
	if n%2 == 0 {
		labDate = day(2025, n%12+1, 20)
	}
	g.add(4, "observation-lab", vars{"ID": "observation-" + id + "-hba1c", "PATIENT": id, "PERFORMER": o.ID,
		"DATE": ymd(labDate), "ISSUED": instant(labDate.Add(26 * time.Hour)), "VALUE": float64(54+(n%10)*3) / 10})
	vitals := day(2025, n%12+1, 5)
	g.add(4, "observation-blood-pressure", vars{"ID": "observation-" + id + "-bp", "PATIENT": id, "PRACTITIONER": p.ID,
		"DATE": ymd(vitals), "SYSTOLIC": float64(110 + (n*3)%30), "DIASTOLIC": float64(70 + (n*2)%20)})
	g.add(4, "observation-heart-rate", vars{"ID": "observation-" + id + "-hr", "PATIENT": id, "PRACTITIONER": p.ID,
		"DATE": ymd(vitals), "VALUE": float64(60 + (n*5)%35)})
}

// Amounts (in cents) of one claim. Cost-sharing: deductible, copay, coinsurance, member liability.
type amounts struct {
	Submitted, Eligible, Deductible, Copay, Coinsurance, MemberLiability, PaidToProvider int
}

func ClaimAmounts(n, k int) amounts {
	b := claimBase[ClaimKind(n, k)]
	a := amounts{Submitted: b[0] * (100 + n*3 + k*5) / 100, Copay: b[1]}
	a.Eligible = a.Submitted * 60 / 100
	if n%2 == 0 {
		a.Deductible = min(50000, a.Eligible/10)
	}
	a.Coinsurance = (a.Eligible - a.Deductible - a.Copay) * 20 / 100
	a.MemberLiability = a.Deductible + a.Copay + a.Coinsurance
	a.PaidToProvider = a.Eligible - a.MemberLiability
	return a
}

const (
	csAdjudication  = "http://terminology.hl7.org/CodeSystem/adjudication"
	csC4BBAdj       = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication"
	csC4BBDiscrim   = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
	csC4BBPayStatus = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBPayerAdjudicationStatus"
)

func money(cents int) map[string]any {
	return map[string]any{"value": float64(cents) / 100, "currency": "USD"}
}

func cc(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return map[string]any{"coding": []any{c}}
}

func amountEntry(system, code, text string, cents int) map[string]any {
	cat := cc(system, code, "")
	cat["text"] = text
	return map[string]any{"category": cat, "amount": money(cents)}
}

func (a amounts) entries() []any {
	return []any{
		amountEntry(csAdjudication, "submitted", "Submitted Amount", a.Submitted),
		amountEntry(csAdjudication, "eligible", "Allowed Amount", a.Eligible),
		amountEntry(csAdjudication, "deductible", "Deductible", a.Deductible),
		amountEntry(csAdjudication, "copay", "Copay", a.Copay),
		amountEntry(csC4BBAdj, "coinsurance", "Coinsurance", a.Coinsurance),
		amountEntry(csC4BBAdj, "memberliability", "Member Liability", a.MemberLiability),
		amountEntry(csC4BBAdj, "paidbypatient", "Patient Pay Amount", a.MemberLiability),
		amountEntry(csC4BBAdj, "paidtoprovider", "Payment Amount", a.PaidToProvider),
	}
}

func status(discriminator, code string) map[string]any {
	return map[string]any{"category": cc(csC4BBDiscrim, discriminator, ""), "reason": cc(csC4BBPayStatus, code, "")}
}

// headerAdjudication: the claim-level network and payment status. The Professional-NonClinician profile
// has benefitpaymentstatus per item (required there) and renderingnetworkstatus in the header; the
// institutional and pharmacy profiles require benefitpaymentstatus in the header.
func headerAdjudication(kind string) []any {
	if kind == kindProfessional {
		return []any{status("billingnetworkstatus", "innetwork"), status("renderingnetworkstatus", "innetwork")}
	}
	return []any{status("billingnetworkstatus", "innetwork"), status("benefitpaymentstatus", "innetwork")}
}

func (g *gen) claim(n, k int, o org, p pract, dx diagnosis) {
	kind := ClaimKind(n, k)
	start := ClaimStart(n, k)
	end := start
	if kind == kindInpatient {
		end = start.AddDate(0, 0, 3)
	}
	received := end.AddDate(0, 0, 2)
	created := end.AddDate(0, 0, 5)
	a := ClaimAmounts(n, k)
	// Amounts are per item only: the institutional profiles allow them at the item or the header level but
	// not both (EOB-institutional-item-or-header-adjudication).
	itemAdj := a.entries()
	if kind == kindProfessional {
		itemAdj = append([]any{status("benefitpaymentstatus", "innetwork")}, itemAdj...)
	}
	v := vars{
		"ID": EOBID(n, k), "CLAIM_ID": fmt.Sprintf("FWC-%02d-%d", n, k), "PATIENT": MemberID(n),
		"START": ymd(start), "END": ymd(end), "CREATED": instant(created), "RECEIVED": ymd(received),
		"PAYER": PayerID, "PROVIDER": o.ID, "PRACTITIONER": p.ID, "COVERAGE": CoverageID(n),
		"ITEM_ADJUDICATION": itemAdj, "ADJUDICATION": headerAdjudication(kind), "TOTAL": a.entries(),
		"PAYMENT": map[string]any{
			// C4BBPayerClaimPaymentStatusCode (required binding of payment.type): paid, denied, partiallypaid.
			"type":   cc(csC4BBPayStatus, "paid", "Paid"),
			"date":   ymd(created.AddDate(0, 0, 10)),
			"amount": money(a.PaidToProvider),
		},
	}
	if kind == kindPharmacy {
		v["NDC"], v["NDC_DISPLAY"] = "0777-3105-02", "Prozac, 100 CAPSULE in 1 BOTTLE (0777-3105-02) (package)"
	} else {
		v["DX_CODE"], v["DX_DISPLAY"] = dx.ICD10.Code, dx.ICD10.Display
		v["TAXONOMY"], v["TAXONOMY_DISPLAY"] = p.Taxonomy, p.TaxonomyDisplay
	}
	g.add(4, "eob-"+kind, v)
}

// X12 306 review action codes used in PDex/PAS.
var reviewAction = map[string][2]string{
	"approved": {"A1", "Certified in total"},
	"denied":   {"A3", "Not Certified"},
	"pended":   {"A4", "Pended"},
}

func (g *gen) priorAuth(pa PriorAuth) {
	n := pa.Member
	oi := orgIndexFor(n)
	o, p := providerOrgs[oi], practFor(oi, n)
	start, _ := time.Parse("2006-01-02", pa.Start)
	end := start.AddDate(0, 3, 0)
	created := start.AddDate(0, 0, -14)
	authNo := fmt.Sprintf("FWPA-%02d-%d", n, pa.Seq)
	submitted := 150000 + n*1000 + pa.Seq*500
	if pa.Drug {
		submitted = 90000 + n*1000
	}
	ra := reviewAction[pa.Decision]
	itemAdj := []any{map[string]any{
		"extension": []any{map[string]any{
			"url": "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewAction",
			"extension": []any{
				map[string]any{"url": "number", "valueString": authNo},
				map[string]any{"url": "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewActionCode",
					"valueCodeableConcept": cc("https://codesystem.x12.org/005010/306", ra[0], ra[1])},
			},
		}},
		"category": cc(csAdjudication, "submitted", ""),
		"amount":   money(submitted),
	}}
	total := []any{map[string]any{"category": cc("http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PriorAuthorizationValueCodes", "submitted", "Submitted"), "amount": money(submitted)}}
	outcome := "complete"
	switch pa.Decision {
	case "pended":
		outcome = "queued"
	case "denied":
		itemAdj = append(itemAdj, map[string]any{
			"category": cc("http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PDexAdjudicationDiscriminator", "denialreason", "Denial Reason"),
			"reason": cc("https://x12.org/codes/claim-adjustment-reason-codes", "50",
				"These are non-covered services because this is not deemed a 'medical necessity' by the payer."),
		})
	case "approved":
		total = append(total, map[string]any{"category": cc("http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PriorAuthorizationValueCodes", "eligible", "Eligible"), "amount": money(submitted * 80 / 100)})
	}
	v := vars{
		"ID": PriorAuthID(n, pa.Seq), "CLAIM_ID": authNo, "PATIENT": MemberID(n), "START": ymd(start), "END": ymd(end),
		"CREATED": instant(created), "PAYER": PayerID, "PROVIDER": o.ID, "PRACTITIONER": p.ID, "COVERAGE": CoverageID(n),
		"OUTCOME": outcome, "ITEM_ADJUDICATION": itemAdj, "TOTAL": total,
		"PRIORITY": "normal", "LEVEL_CODE": "E", "LEVEL_DISPLAY": "Elective",
	}
	if pa.Expedite {
		v["PRIORITY"], v["LEVEL_CODE"], v["LEVEL_DISPLAY"] = "stat", "U", "Urgent"
	}
	if pa.Drug {
		v["CLAIM_TYPE"], v["SERVICE_TYPE"], v["SERVICE_TYPE_DISPLAY"] = "pharmacy", "88", "Pharmacy"
		v["PRODUCT_SYSTEM"], v["PRODUCT_CODE"], v["PRODUCT_DISPLAY"] = "http://hl7.org/fhir/sid/ndc", "0777-3105-02", "Prozac, 100 CAPSULE in 1 BOTTLE (0777-3105-02) (package)"
	} else if pa.Seq%2 == 1 {
		v["CLAIM_TYPE"], v["SERVICE_TYPE"], v["SERVICE_TYPE_DISPLAY"] = "professional", "73", "Diagnostic Medical"
		v["PRODUCT_SYSTEM"], v["PRODUCT_CODE"], v["PRODUCT_DISPLAY"] = "http://www.ama-assn.org/go/cpt", "70551", "MRI brain without contrast material"
	} else {
		v["CLAIM_TYPE"], v["SERVICE_TYPE"], v["SERVICE_TYPE_DISPLAY"] = "professional", "2", "Surgical"
		v["PRODUCT_SYSTEM"], v["PRODUCT_CODE"], v["PRODUCT_DISPLAY"] = "http://www.ama-assn.org/go/cpt", "29881", "Arthroscopy, knee, surgical; with meniscectomy"
	}
	g.add(4, "eob-priorauth", v)
}

func (g *gen) groups() {
	for oi, o := range providerOrgs {
		var entries []any
		for n := 1; n <= NumMembers; n++ {
			attributed := false
			for _, x := range AttributedOrgs(n) {
				attributed = attributed || x == oi
			}
			if !attributed {
				continue
			}
			ext := []any{
				map[string]any{"url": ATRAttributedProv, "valueReference": map[string]any{"reference": "Practitioner/" + practFor(oi, n).ID}},
				map[string]any{"url": ATRCoverageRef, "valueReference": map[string]any{"reference": "Coverage/" + CoverageID(n)}},
			}
			if OptedOut[n] {
				ext = append(ext, map[string]any{"url": OptOutExtensionURL, "valueBoolean": true})
			}
			entries = append(entries, map[string]any{
				"extension": ext,
				"entity":    map[string]any{"reference": "Patient/" + MemberID(n)},
				"period":    map[string]any{"start": "2024-01-01"},
				"inactive":  false,
			})
		}
		g.add(4, "group-attribution", vars{"ID": GroupID(o.ID), "NPI": o.NPI, "ORG": o.ID, "ORG_NAME": o.Name,
			"QUANTITY": float64(len(entries)), "MEMBERS": entries})
	}
}

func (g *gen) consent(n int) {
	at := day(2025, n%12+1, 1).Add(12 * time.Hour)
	g.add(4, "consent-provider-access-opt-out", vars{"ID": ConsentID(n), "PATIENT": MemberID(n), "PAYER": PayerID,
		"DATETIME": instant(at), "START": ymd(at)})
}
