// Package priorauth builds and reads what a provider system exchanges with the Prior Authorization API
// (Da Vinci PAS 2.0.1): the PAS request and inquiry Bundles of the suite's cases (from the IG's
// MedicalServices, Homecare and PASClaimInquiry examples in testdata/, see its README), the decisions in a
// PAS response Bundle (X12 306 review action codes), Subscriptions Backport R4 rest-hook Subscriptions and
// their notifications, the review admin API, a notification listener and a fake of the payer's UM system.
// The end-to-end suite (this folder's _test files), the fault test (test/faults) and the $submit benchmark
// (test/bench/priorauth) share it.
package priorauth

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

//go:embed testdata/*.json
var testdata embed.FS

// PAS 2.0.1 profiles (StructureDefinition canonicals).
const (
	ProfileRequestBundle         = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle"
	ProfileResponseBundle        = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-response-bundle"
	ProfileInquiryRequestBundle  = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-inquiry-request-bundle"
	ProfileInquiryResponseBundle = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-inquiry-response-bundle"
)

// The decision in a ClaimResponse: item.adjudication.extension[reviewAction].extension[reviewActionCode]
// (PAS 2.0.1 profile-claimresponse), X12 306 codes; a denial's reason in extension[reasonCode] (X12 886).
const (
	ReviewActionURL     = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction"
	ReviewActionCodeURL = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewActionCode"
	X12ReviewAction     = "https://codesystem.x12.org/005010/306"
	X12ReasonCode       = "https://codesystem.x12.org/external/886"
	LevelOfServiceURL   = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-levelOfServiceCode"
	X12LevelOfService   = "https://codesystem.x12.org/005010/1338"

	Approved = "A1" // certified in total
	Denied   = "A3" // not certified
	Pended   = "A4" // pending
)

// Product and service code systems (PAS ValueSet X12278RequestedServiceType).
const (
	CPT   = "http://www.ama-assn.org/go/cpt"
	HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
	NDC   = "http://hl7.org/fhir/sid/ndc"
)

// Code is one coding of a Claim item's productOrService.
type Code struct{ System, Code, Display string }

// The items of the cases, as config/prior-auth-rules.yaml decides them.
var (
	MRIBrain     = Code{CPT, "70551", "MRI brain without contrast"}        // approved automatically
	EnteralB4185 = Code{HCPCS, "B4185", "Parenteral nutrition solution"}   // denied with a reason
	CABG         = Code{CPT, "33510", "Coronary artery bypass, vein only"} // pended for review
	EnteralB4184 = Code{HCPCS, "B4184", "Parenteral nutrition solution"}   // pended for review
	HomeHealth   = Code{HCPCS, "G0154", "Direct skilled nursing services"} // approved automatically
	GeneticTest  = Code{CPT, "81162", "BRCA1/BRCA2 gene analysis"}         // referred to the UM system
	Infliximab   = Code{HCPCS, "J1745", "Injection, infliximab, 10 mg"}    // a drug: approved, never shown elsewhere
	OfficeVisit  = Code{CPT, "99212", "Established patient office visit"}  // needs no prior authorization
)

// Member is a seed member (test/seed/generate.go) as the request Bundle's Patient describes them.
type Member struct {
	ID, Number, Family, Given, Gender, BirthDate string
}

// Member05 is the suite's member: member05 logs in as her, and no other suite counts her claims (the seed
// test counts member-01..03's, test/e2e and test/adversarial read member-01 and member-04 with _count=50).
var Member05 = Member{ID: "member-05", Number: "FWM0005", Family: "Clark", Given: "Emma", Gender: "female", BirthDate: "1985-02-28"}

// MemberIDSystem names the payer's members (config prior_auth.member_identifier_system).
const MemberIDSystem = "https://fhirwall.example/member-id"

// Provider is a requesting provider organisation of the seed.
type Provider struct{ ID, Name, NPI string }

var (
	OrgA = Provider{ID: "org-a", Name: "Alder Medical Group", NPI: "1234567893"}
	OrgB = Provider{ID: "org-b", Name: "Birch Community Hospital", NPI: "1345678902"}
)

// Claim identifiers the cases send: unique per case and per run, so a rerun never meets a previous run's
// requests.
const (
	ClaimIdentifierSystem = "https://fhirwall.example/prior-auth-e2e/trace-number"
	TransactionSystem     = "https://fhirwall.example/prior-auth-e2e/transaction"
)

// NewRunID is a run's unique prefix of identifiers: the time and 4 random bytes.
func NewRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}

// Request is one PAS request a case sends. Template names a testdata file: "medicalservices" (one item,
// from Bundle-MedicalServicesAuthorizationBundleExample) or "homecare" (two items, from
// Bundle-HomecareAuthorizationBundleExample). Items replace the template's productOrService codes in order
// (a longer list repeats the last item).
type Request struct {
	Template       string
	Identifier     string // Claim.identifier value
	Member         Member
	Provider       Provider
	Items          []Code
	LevelOfService string // X12 1338 code on the Claim (U: urgent, 03: emergency); "" none
	Priority       string // Claim.priority (processpriority); "" normal
	Use            string // Claim.use; "" preauthorization
	ServiceDate    time.Time
}

// NewRequest is a one-item request of m by org-a from the MedicalServices template.
func NewRequest(identifier string, item Code) Request {
	return Request{Template: "medicalservices", Identifier: identifier, Member: Member05, Provider: OrgA, Items: []Code{item}}
}

// ClaimIdentifier is the request's Claim.identifier as system|value.
func (r Request) ClaimIdentifier() string { return ClaimIdentifierSystem + "|" + r.Identifier }

// Bundle is the PAS request Bundle of r (profile-pas-request-bundle).
func (r Request) Bundle() ([]byte, error) {
	b, err := r.build("request-"+r.Template+".json", false)
	if err != nil {
		return nil, err
	}
	return json.Marshal(b)
}

// Inquiry is the PAS inquiry Bundle (profile-pas-inquiry-request-bundle) asking for the decision on r:
// the same Claim.identifier, patient, provider and insurer, from Bundle-PASClaimInquiryBundleExample.
func (r Request) Inquiry() ([]byte, error) {
	b, err := r.build("inquiry.json", true)
	if err != nil {
		return nil, err
	}
	return json.Marshal(b)
}

// Nonconformant is Inferno's nonconformant PAS bundle: a request Bundle with "entry": [].
func Nonconformant(identifier string) ([]byte, error) {
	b, err := load("nonconformant.json")
	if err != nil {
		return nil, err
	}
	b["identifier"] = map[string]any{"system": TransactionSystem, "value": identifier}
	b["timestamp"] = time.Now().UTC().Format(time.RFC3339)
	return json.Marshal(b)
}

func load(name string) (map[string]any, error) {
	raw, err := testdata.ReadFile("testdata/" + name)
	if err != nil {
		return nil, fmt.Errorf("testdata %s: %w", name, err)
	}
	var b map[string]any
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("testdata %s: %w", name, err)
	}
	return b, nil
}

func (r Request) build(file string, inquiry bool) (map[string]any, error) {
	if r.Template == "" {
		r.Template = "medicalservices"
	}
	if r.Member.ID == "" {
		r.Member = Member05
	}
	if r.Provider.NPI == "" {
		r.Provider = OrgA
	}
	b, err := load(file)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	service := r.ServiceDate
	if service.IsZero() {
		service = now.AddDate(0, 0, 14)
	}
	b["identifier"] = map[string]any{"system": TransactionSystem, "value": r.Identifier + map[bool]string{true: "-inquiry", false: ""}[inquiry] + "-" + hex8()}
	b["timestamp"] = now.Format(time.RFC3339)
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		res, _ := e.(map[string]any)["resource"].(map[string]any)
		switch {
		case res["resourceType"] == "Patient":
			res["identifier"] = []any{map[string]any{"system": MemberIDSystem, "value": r.Member.Number}}
			res["name"] = []any{map[string]any{"family": r.Member.Family, "given": []any{r.Member.Given}}}
			res["gender"] = r.Member.Gender
			res["birthDate"] = r.Member.BirthDate
		case res["resourceType"] == "Organization" && res["id"] == "UMOExample":
			res["identifier"] = []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": r.Provider.NPI}}
			res["name"] = r.Provider.Name
		case res["resourceType"] == "Claim":
			if err := r.claim(res, now, service); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

func (r Request) claim(c map[string]any, now, service time.Time) error {
	c["identifier"] = []any{map[string]any{"system": ClaimIdentifierSystem, "value": r.Identifier,
		"assigner": map[string]any{"identifier": map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": r.Provider.NPI}}}}
	c["created"] = now.Format(time.RFC3339)
	if r.Use != "" {
		c["use"] = r.Use
	}
	if r.Priority != "" {
		c["priority"] = map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": r.Priority}}}
	}
	if r.LevelOfService != "" {
		ext, _ := c["extension"].([]any)
		c["extension"] = append(ext, map[string]any{"url": LevelOfServiceURL,
			"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": X12LevelOfService, "code": r.LevelOfService}}}})
	}
	items, _ := c["item"].([]any)
	if len(items) == 0 {
		return errors.New("template Claim has no item")
	}
	if len(r.Items) == 0 {
		return errors.New("a request needs at least one item")
	}
	var out []any
	for i, code := range r.Items {
		src := items[min(i, len(items)-1)]
		it, err := clone(src)
		if err != nil {
			return err
		}
		it["sequence"] = i + 1
		coding := map[string]any{"system": code.System, "code": code.Code}
		if code.Display != "" {
			coding["display"] = code.Display
		}
		it["productOrService"] = map[string]any{"coding": []any{coding}}
		it["servicedDate"] = service.Format("2006-01-02")
		out = append(out, it)
	}
	c["item"] = out
	return nil
}

func clone(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

func hex8() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// --- answers ----------------------------------------------------------------------------------------------

// ItemAction is the review action on one ClaimResponse item.
type ItemAction struct {
	Sequence int
	Code     string   // X12 306: A1, A3, A4, ...
	Number   string   // the certification (authorization) number, HCR02
	Reasons  []string // system|code of extension[reasonCode] (X12 886)
}

// RequestIDSystem is the ClaimResponse identifier naming fhirwall's request id (the admin API's id).
const RequestIDSystem = "https://fhirwall.dev/NamingSystem/prior-auth-request"

// Decision is one ClaimResponse of a PAS response or inquiry response Bundle.
type Decision struct {
	ID        string // ClaimResponse.id
	RequestID string // the ClaimResponse identifier of system RequestIDSystem
	Request   string // ClaimResponse.request.reference
	Outcome   string
	Items     []ItemAction
	Resource  map[string]any
}

// Codes are the review action codes of every item, in item order.
func (d Decision) Codes() []string {
	var out []string
	for _, it := range d.Items {
		out = append(out, it.Code)
	}
	return out
}

// All reports whether every item carries code.
func (d Decision) All(code string) bool {
	if len(d.Items) == 0 {
		return false
	}
	for _, it := range d.Items {
		if it.Code != code {
			return false
		}
	}
	return true
}

// Answer is a PAS response or inquiry response Bundle as read.
type Answer struct {
	Bundle       map[string]any
	FirstType    string     // resourceType of entry[0]
	Decisions    []Decision // every ClaimResponse, in entry order
	EntryProblem []string   // entries without fullUrl or resource, or with search/request/response
}

// ReadAnswer reads a PAS response Bundle (or inquiry response Bundle).
func ReadAnswer(body []byte) (Answer, error) {
	var b map[string]any
	if err := json.Unmarshal(body, &b); err != nil {
		return Answer{}, fmt.Errorf("not JSON: %w", err)
	}
	if b["resourceType"] != "Bundle" {
		return Answer{}, fmt.Errorf("a %v, not a Bundle", b["resourceType"])
	}
	a := Answer{Bundle: b}
	entries, _ := b["entry"].([]any)
	for i, e := range entries {
		em, _ := e.(map[string]any)
		res, _ := em["resource"].(map[string]any)
		if i == 0 && res != nil {
			a.FirstType = fmt.Sprint(res["resourceType"])
		}
		if em["fullUrl"] == nil || res == nil {
			a.EntryProblem = append(a.EntryProblem, fmt.Sprintf("entry %d has no fullUrl or no resource", i))
		}
		for _, k := range []string{"search", "request", "response"} {
			if em[k] != nil {
				a.EntryProblem = append(a.EntryProblem, fmt.Sprintf("entry %d has %s", i, k))
			}
		}
		if res != nil && res["resourceType"] == "ClaimResponse" {
			a.Decisions = append(a.Decisions, ReadClaimResponse(res))
		}
	}
	return a, nil
}

// First is the first ClaimResponse (the PAS response Bundle has exactly one, and first).
func (a Answer) First() (Decision, bool) {
	if len(a.Decisions) == 0 {
		return Decision{}, false
	}
	return a.Decisions[0], true
}

// ReadClaimResponse reads the review actions of a ClaimResponse.
func ReadClaimResponse(cr map[string]any) Decision {
	d := Decision{ID: str(cr["id"]), Outcome: str(cr["outcome"]), Resource: cr}
	if req, ok := cr["request"].(map[string]any); ok {
		d.Request = str(req["reference"])
	}
	for _, ident := range list(cr["identifier"]) {
		if ident["system"] == RequestIDSystem {
			d.RequestID = str(ident["value"])
		}
	}
	items, _ := cr["item"].([]any)
	for _, it := range items {
		im, _ := it.(map[string]any)
		ia := ItemAction{}
		if n, ok := im["itemSequence"].(float64); ok {
			ia.Sequence = int(n)
		}
		adjs, _ := im["adjudication"].([]any)
		for _, adj := range adjs {
			am, _ := adj.(map[string]any)
			for _, ext := range list(am["extension"]) {
				if ext["url"] != ReviewActionURL {
					continue
				}
				for _, sub := range list(ext["extension"]) {
					switch sub["url"] {
					case ReviewActionCodeURL, "code":
						for _, c := range codings(sub["valueCodeableConcept"]) {
							if c["system"] == X12ReviewAction {
								ia.Code = str(c["code"])
							}
						}
					case "number":
						ia.Number = str(sub["valueString"])
					case "reasonCode":
						for _, c := range codings(sub["valueCodeableConcept"]) {
							ia.Reasons = append(ia.Reasons, str(c["system"])+"|"+str(c["code"]))
						}
					}
				}
			}
		}
		d.Items = append(d.Items, ia)
	}
	return d
}

// UnresolvedReferences are the references inside a Bundle's resources (relative Type/id or absolute URLs)
// that no entry's fullUrl or Type/id resolves: PAS asks every referenced resource to be in the Bundle.
// Contained (#…) references and canonical-looking URLs outside the Bundle's resource types are left alone.
func UnresolvedReferences(bundle map[string]any) []string {
	known := map[string]bool{}
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		em, _ := e.(map[string]any)
		known[str(em["fullUrl"])] = true
		if res, ok := em["resource"].(map[string]any); ok {
			known[str(res["resourceType"])+"/"+str(res["id"])] = true
		}
	}
	var out []string
	for _, e := range entries {
		em, _ := e.(map[string]any)
		for _, ref := range references(em["resource"]) {
			if strings.HasPrefix(ref, "#") || known[ref] {
				continue
			}
			parts := strings.Split(ref, "/")
			if len(parts) >= 2 && known[parts[len(parts)-2]+"/"+parts[len(parts)-1]] {
				continue
			}
			out = append(out, ref)
		}
	}
	return out
}

func references(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				out = append(out, s)
			} else {
				out = append(out, references(e)...)
			}
		}
	case []any:
		for _, e := range x {
			out = append(out, references(e)...)
		}
	}
	return out
}

// IsOperationOutcome reports whether body is a FHIR OperationOutcome.
func IsOperationOutcome(body []byte) bool {
	var r struct{ ResourceType string }
	return json.Unmarshal(body, &r) == nil && r.ResourceType == "OperationOutcome"
}

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func list(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func codings(cc any) []map[string]any {
	m, _ := cc.(map[string]any)
	return list(m["coding"])
}

// Contains reports whether the JSON text of v contains s (a unique identifier, say).
func Contains(v any, s string) bool {
	b, err := json.Marshal(v)
	return err == nil && bytes.Contains(b, []byte(s))
}
