package priorauth

import (
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/synthetic"
)

// Profiles and code systems of PAS 2.0.1 (package hl7.fhir.us.davinci-pas 2.0.1) and PDex 2.0.0.
const (
	ProfileRequestBundle         = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle"
	ProfileInquiryRequestBundle  = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-inquiry-request-bundle"
	ProfileResponseBundle        = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-response-bundle"
	ProfileInquiryResponseBundle = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-inquiry-response-bundle"
	profileClaimResponse         = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claimresponse"
	profileClaimInquiryResponse  = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claiminquiryresponse"
	profilePDexPriorAuth         = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/pdex-priorauthorization|2.0.0"

	extReviewAction     = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction"
	extReviewActionCode = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewActionCode"
	pdexReviewAction    = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewAction"
	pdexReviewCode      = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-reviewActionCode"
	pdexLevelOfService  = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/extension-levelOfServiceCode"

	SystemX12Action       = "https://codesystem.x12.org/005010/306"   // HCR01 review action
	SystemX12Reason       = "https://codesystem.x12.org/external/886" // HCR03 review decision reason
	SystemX12Reject       = "https://codesystem.x12.org/005010/901"   // AAA03 reject reason
	systemAdjudication    = "http://terminology.hl7.org/CodeSystem/adjudication"
	systemX12ServiceType  = "https://codesystem.x12.org/005010/1365"   // PAS item.category
	systemPDexServiceType = "https://x12.org/codes/service-type-codes" // the same X12 1365 codes, as PDex binds them
	systemBundleID        = "urn:ietf:rfc:3986"                        // Bundle.identifier: a urn:uuid
	systemRequestID       = "https://fhirwall.dev/NamingSystem/prior-auth-request"
	systemAuthNumber      = "https://fhirwall.dev/NamingSystem/prior-auth-number"

	// TagSystem marks the resources fhirwall's prior-auth API stored on the FHIR server.
	TagSystem = "https://fhirwall.dev/CodeSystem/prior-auth"
)

// actionDisplay are the X12 306 displays PAS's examples use.
var actionDisplay = map[Verdict]string{
	VerdictApproved: "Certified in total", VerdictDenied: "Not Certified", VerdictPended: "Pending",
	VerdictNotRequired: "No Action Required",
}

// X12 901 reject reasons (AAA03) fhirwall answers a business error with (X12 005010X217 278: 2010A UMO
// level 79; 2010C subscriber level 72, 73, 75, 76), in ClaimResponse.error.code (PAS 2.0.1
// profile-claimresponse-base, binding X12278RejectReasonCodes).
var (
	rejectParticipant   = Code{System: SystemX12Reject, Code: "79", Display: "Invalid Participant Identification"}
	rejectSubscriberID  = Code{System: SystemX12Reject, Code: "72", Display: "Invalid/Missing Subscriber/Insured ID"}
	rejectSubscriberNm  = Code{System: SystemX12Reject, Code: "73", Display: "Invalid/Missing Subscriber/Insured Name"}
	rejectNotFound      = Code{System: SystemX12Reject, Code: "75", Display: "Subscriber/Insured Not Found"}
	rejectDuplicateSubs = Code{System: SystemX12Reject, Code: "76", Display: "Duplicate Subscriber/Insured ID Number"}
)

// authValidity is how long an approval is valid from its decision (ClaimResponse.preAuthPeriod): fhirwall's
// default, as PAS and CMS-0057-F leave it to the payer.
const authValidity = 180 * 24 * time.Hour

// AuthNumber is the certification number of an approved request (X12 HCR02, reviewAction "number"; the PDex
// prior authorization's preAuthRef); derived from the request id, so every rebuild says the same.
func AuthNumber(id string) string {
	sum := sha1.Sum([]byte("auth|" + id))
	return fmt.Sprintf("FWPA-%X", sum[:6])
}

// uuidURN names a resource in the Bundles fhirwall builds: a name-based UUID (RFC 9562 v5 layout) of what,
// so a rebuilt Bundle names it alike.
func uuidURN(what string) string {
	h := sha1.Sum([]byte("fhirwall prior-auth|" + what))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func coding(c Code) map[string]any {
	m := map[string]any{"system": c.System, "code": c.Code}
	if c.Display != "" {
		m["display"] = c.Display
	}
	return m
}

func concept(c Code) map[string]any { return map[string]any{"coding": []any{coding(c)}} }

func reference(ref string) map[string]any { return map[string]any{"reference": ref} }

func fhirTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func fhirDate(t time.Time) string { return t.UTC().Format("2006-01-02") }

func ourTag() map[string]any {
	return map[string]any{"tag": []any{map[string]any{"system": TagSystem, "code": "pas",
		"display": "Stored by fhirwall's Prior Authorization API"}}}
}

// refs are what a ClaimResponse points to: inside a response Bundle, the request's own entries; on the FHIR
// server, its resources.
type refs struct{ patient, insurer, requestor, request map[string]any }

// bundleRefs point to the request Bundle's entries by fullUrl (absolute, so they resolve whatever the
// ClaimResponse's own fullUrl).
func bundleRefs(s *Submission) refs {
	to := refs{patient: reference(s.Patient.FullURL), insurer: reference(s.Insurer.FullURL),
		requestor: reference(s.Provider.FullURL), request: reference(s.Claim.FullURL)}
	// The request by its PAS identifier (the Claim stays in the Bundle): a validator resolving the Claim
	// would check it against profile-claim again, which an offline validator cannot finish for a Claim with
	// any Claim.extension (profile-claim slices it with the R5 cross-version extension-Claim.encounter,
	// package hl7.fhir.uv.xver-r5.r4, unavailable offline).
	if ids := asList(s.Claim.Resource["identifier"]); len(ids) > 0 {
		if id := asObj(ids[0]); asStr(id["value"]) != "" {
			to.request = map[string]any{"type": "Claim", "identifier": map[string]any{"system": id["system"], "value": id["value"]}}
		}
	}
	return to
}

// serverRefs point to the FHIR server's resources.
func (a *Adapter) serverRefs(r Request) refs {
	return refs{patient: reference(r.Patient), insurer: reference(a.set.Insurer), requestor: reference(r.Provider),
		request: reference("Claim/" + r.ClaimID)}
}

// claimResponse builds the PAS ClaimResponse of r (profile-claimresponse, PAS 2.0.1, with 2.2.1's required
// request): the decision per item in item.adjudication.extension:reviewAction (X12 306 HCR01 with HCR02 the
// certification number on approvals and HCR03 the reason on denials), itemSequence echoing the Claim's
// item.sequence (PAS spec-33), outcome complete (the decision is in reviewAction, as in every PAS example) or
// error with ClaimResponse.error for a rejected request. No narrative.
func claimResponse(s *Submission, r Request, to refs, rejects []Code, profile string) map[string]any {
	created := r.DecidedAt
	if created.IsZero() {
		created = r.Received
	}
	cr := map[string]any{
		"resourceType": "ClaimResponse",
		"id":           r.ClaimResponseID,
		"meta":         map[string]any{"profile": []any{profile}},
		"identifier":   []any{map[string]any{"system": systemRequestID, "value": r.ID}},
		"status":       "active",
		"type":         claimTypeOf(s),
		"use":          "preauthorization",
		"patient":      to.patient,
		"created":      fhirTime(created),
		"insurer":      to.insurer,
		"requestor":    to.requestor,
		"request":      to.request,
		"outcome":      "complete",
	}
	if ids := asList(s.Claim.Resource["identifier"]); len(ids) > 0 {
		// The submitter's trace number first, as PAS's examples echo it.
		cr["identifier"] = []any{deepCopy(ids[0]), cr["identifier"].([]any)[0]}
	}
	if len(rejects) > 0 {
		cr["outcome"] = "error"
		var errs []any
		for _, c := range rejects {
			errs = append(errs, map[string]any{"code": concept(c)})
		}
		cr["error"] = errs
		return cr
	}
	if r.Status == StatusApproved || r.Status == StatusPartial {
		cr["preAuthPeriod"] = map[string]any{"start": fhirDate(created), "end": fhirDate(created.Add(authValidity))}
	}
	var items []any
	for _, it := range r.Items {
		items = append(items, map[string]any{
			"itemSequence": it.Sequence,
			"adjudication": []any{map[string]any{
				"extension": []any{reviewAction(extReviewAction, extReviewActionCode, it, r.ID)},
				"category":  concept(Code{System: systemAdjudication, Code: "submitted"}),
			}},
		})
	}
	if len(items) > 0 {
		cr["item"] = items
	}
	return cr
}

// reviewAction is PAS (or PDex) extension-reviewAction for one item: code, number on approvals, reasonCode
// on denials.
func reviewAction(url, codeURL string, it ItemDecision, id string) map[string]any {
	subs := []any{map[string]any{"url": codeURL,
		"valueCodeableConcept": concept(Code{System: SystemX12Action, Code: string(it.Verdict), Display: actionDisplay[it.Verdict]})}}
	if it.Verdict == VerdictApproved {
		subs = append(subs, map[string]any{"url": "number", "valueString": AuthNumber(id)})
	}
	if it.Verdict == VerdictDenied && it.Reason != nil {
		subs = append(subs, map[string]any{"url": "reasonCode", "valueCodeableConcept": concept(*it.Reason)})
	}
	return map[string]any{"url": url, "extension": subs}
}

// claimTypeOf is the Claim's type, as the ClaimResponse and the prior authorization repeat it.
func claimTypeOf(s *Submission) any {
	if t := asObj(s.Claim.Resource["type"]); t != nil {
		return t
	}
	return concept(Code{System: "http://terminology.hl7.org/CodeSystem/claim-type", Code: "professional"})
}

// responseBundle is the PAS response Bundle (profile-pas-response-bundle; inquiry: profile-pas-inquiry-
// response-bundle with the ClaimResponse as profile-claiminquiryresponse): type collection, identifier
// (required by 2.2.1), timestamp, the ClaimResponse first, then the request Bundle's entries, so every
// resource the ClaimResponse references — and that they reference — is in it (PAS 2.0.1 §"Claim response").
// Entries carry fullUrl and resource only.
func responseBundle(s *Submission, r Request, rejects []Code, inquiry bool, now time.Time) ([]byte, error) {
	bundleProfile, crProfile := ProfileResponseBundle, profileClaimResponse
	if inquiry {
		bundleProfile, crProfile = ProfileInquiryResponseBundle, profileClaimInquiryResponse
	}
	cr := claimResponse(s, r, bundleRefs(s), rejects, crProfile)
	entries := []any{map[string]any{"fullUrl": uuidURN("ClaimResponse/" + r.ClaimResponseID), "resource": cr}}
	for _, e := range s.Entries {
		if e.Type() == "ClaimResponse" {
			continue // a rebuild from an earlier response Bundle: that decision is replaced
		}
		entries = append(entries, map[string]any{"fullUrl": e.FullURL, "resource": e.Resource})
	}
	b := map[string]any{
		"resourceType": "Bundle",
		"meta":         map[string]any{"profile": []any{bundleProfile}},
		"identifier": map[string]any{"system": systemBundleID,
			"value": uuidURN(fmt.Sprintf("response/%s/%d/%s", r.ID, r.Version, now.UTC().Format(time.RFC3339Nano)))},
		"type":      "collection",
		"timestamp": fhirTime(now),
		"entry":     entries,
	}
	if r.Sandbox {
		synthetic.Tag(b)
	}
	return json.Marshal(b)
}

// parseResponseBundle reads a response Bundle fhirwall built back into the request it answers: its Claim
// and the resources around it, to rebuild the decision (review) or answer an inquiry.
func parseResponseBundle(b []byte) (*Submission, error) {
	root, err := decodeJSONObject(b)
	if err != nil {
		return nil, err
	}
	s, err := parseEntries(root)
	if err != nil {
		return nil, err
	}
	for _, e := range s.Entries {
		if e.Type() == "Claim" {
			s.Claim = e
			break
		}
	}
	if s.Claim == nil {
		return nil, malformed("the response Bundle holds no Claim")
	}
	return s, s.readClaim()
}

// storedClaim is the Claim as fhirwall keeps it on the FHIR server: the submitted Claim without narrative,
// with its own id and tag, the member, insurer and provider references naming the FHIR server's resources,
// and every other reference into the Bundle (which the FHIR server does not hold) kept as an identifier and
// display only, so the server's referential integrity accepts it.
func (a *Adapter) storedClaim(s *Submission, r Request) map[string]any {
	c := deepCopy(s.Claim.Resource)
	delete(c, "text")
	c["id"] = r.ClaimID
	c["meta"] = ourTag()
	a.rewriteReferences(s, r, c)
	return c
}

// rewriteReferences points the Bundle references in v at the FHIR server (see storedClaim).
func (a *Adapter) rewriteReferences(s *Submission, r Request, v any) {
	walkReferences(v, func(ref map[string]any) {
		raw := asStr(ref["reference"])
		if strings.HasPrefix(raw, "#") {
			return
		}
		e := s.Resolve(s.Claim, raw)
		for k := range ref {
			delete(ref, k)
		}
		switch {
		case e == nil:
			ref["display"] = "a resource of the submitted request"
		case e == s.Patient:
			ref["reference"] = r.Patient
		case e == s.Insurer:
			ref["reference"] = a.set.Insurer
		case e == s.Provider:
			ref["reference"] = r.Provider
		default:
			ref["type"] = e.Type()
			if ids := asList(e.Resource["identifier"]); len(ids) > 0 {
				if id := asObj(ids[0]); asStr(id["value"]) != "" {
					ref["identifier"] = map[string]any{"system": id["system"], "value": id["value"]}
				}
			}
			ref["display"] = e.Type() + " of the submitted request"
		}
	})
}

// storedClaimResponse is the ClaimResponse on the FHIR server: the response Bundle's, pointing at the
// server's resources, tagged.
func (a *Adapter) storedClaimResponse(s *Submission, r Request) map[string]any {
	cr := claimResponse(s, r, a.serverRefs(r), nil, profileClaimResponse)
	cr["meta"].(map[string]any)["tag"] = ourTag()["tag"]
	return cr
}

// priorAuthEOB is the PDex prior authorization (ExplanationOfBenefit use=preauthorization, profile
// pdex-priorauthorization 2.0.0) Patient Access, Provider Access and Payer-to-Payer show. Its decision reads
// as internal/datascope reads it: pended → outcome queued with A4, approved → complete with A1, denied →
// complete with A3 (and the reason). A line that needs no authorization (NA) carries no review action. A drug
// request stays recognisable as one (its NDC or HCPCS J productOrService, claim type pharmacy when the Claim
// said so): the other APIs never show drug prior authorizations.
func (a *Adapter) priorAuthEOB(s *Submission, r Request) map[string]any {
	created := r.Received
	eob := map[string]any{
		"resourceType":  "ExplanationOfBenefit",
		"id":            r.EOBID,
		"meta":          map[string]any{"profile": []any{profilePDexPriorAuth}, "tag": ourTag()["tag"]},
		"identifier":    []any{map[string]any{"system": systemRequestID, "value": r.ID}},
		"status":        "active",
		"type":          claimTypeOf(s),
		"use":           "preauthorization",
		"patient":       reference(r.Patient),
		"created":       fhirTime(created),
		"insurer":       reference(a.set.Insurer),
		"provider":      reference(r.Provider),
		"claim":         reference("Claim/" + r.ClaimID),
		"claimResponse": reference("ClaimResponse/" + r.ClaimResponseID),
	}
	if s.LevelOfService != "" {
		eob["extension"] = []any{map[string]any{"url": pdexLevelOfService,
			"valueCodeableConcept": concept(Code{System: systemLevelOfSvc, Code: s.LevelOfService})}}
	}
	if p := asObj(s.Claim.Resource["priority"]); p != nil {
		eob["priority"] = deepCopy(p)
	}
	switch r.Status {
	case StatusPended:
		eob["outcome"] = "queued"
	case StatusPartial:
		eob["outcome"] = "partial"
	default:
		eob["outcome"] = "complete"
	}
	approved := false
	for _, it := range r.Items {
		approved = approved || it.Verdict == VerdictApproved
	}
	if approved {
		at := r.DecidedAt
		if at.IsZero() { // lines approved while others wait for a reviewer
			at = r.Received
		}
		eob["preAuthRef"] = []any{AuthNumber(r.ID)}
		eob["preAuthRefPeriod"] = []any{map[string]any{"start": fhirDate(at), "end": fhirDate(at.Add(authValidity))}}
	}
	var insurance []any
	for i, cov := range s.Coverages {
		ref := map[string]any{"reference": cov.FullURL}
		a.rewriteReferences(s, r, map[string]any{"x": ref})
		insurance = append(insurance, map[string]any{"focal": i == 0, "coverage": ref})
	}
	if len(insurance) == 0 {
		insurance = []any{map[string]any{"focal": true, "coverage": map[string]any{"display": "the member's coverage"}}}
	}
	eob["insurance"] = insurance
	decided := map[int]ItemDecision{}
	for _, it := range r.Items {
		decided[it.Sequence] = it
	}
	var items []any
	for _, ci := range s.Items {
		line := map[string]any{"sequence": ci.Sequence}
		if ps := asObj(ci.raw["productOrService"]); ps != nil {
			line["productOrService"] = deepCopy(ps)
		}
		if cat := eobCategory(ci.Category); cat != nil {
			line["category"] = cat
		}
		for _, k := range []string{"servicedDate", "servicedPeriod", "quantity"} {
			if v, ok := ci.raw[k]; ok {
				line[k] = deepCopy(v)
			}
		}
		if d, ok := decided[ci.Sequence]; ok && d.Verdict != VerdictNotRequired {
			adj := map[string]any{
				"extension": []any{reviewAction(pdexReviewAction, pdexReviewCode, d, r.ID)},
				"category":  concept(Code{System: systemAdjudication, Code: "submitted"}),
			}
			if ci.Net != nil {
				adj["amount"] = deepCopy(ci.Net) // what was submitted; PDex requires an amount on it
			}
			line["adjudication"] = []any{adj}
		}
		items = append(items, line)
	}
	eob["item"] = items
	if !pdexConformant(items) {
		// PDex 2.0.0 wants an amount on each decision's adjudication and a CPT, HCPCS or HIPPS code on each
		// line; a prior authorization without them does not claim the profile (it stays a prior authorization:
		// use preauthorization is what the data scopes read).
		delete(eob["meta"].(map[string]any), "profile")
		// R4 binds ExplanationOfBenefit.priority to processpriority's CodeSystem URL, which validators refuse
		// as a value set; PDex rebinds it. Without PDex's claim the priority goes (0..1; the level of service
		// extension and the Claim keep the urgency).
		delete(eob, "priority")
	}
	return eob
}

// pdexProcedureSystems are the systems of PDex 2.0.0's PDexPAInstitutionalProcedureCodesVS (required on
// item.productOrService).
// HCPCS is listed there under https://, which HAPI's validator (8.8.0) still does not find in the value set
// offline, so an HCPCS line does not claim it either.
var pdexProcedureSystems = []string{"http://www.ama-assn.org/go/cpt",
	"https://www.cms.gov/Medicare/Medicare-Fee-for-Service-Payment/ProspMedicareFeeSvcPmtGen/HIPPSCodes"}

// pdexConformant: every line has a code PDex accepts and every adjudication its amount.
func pdexConformant(items []any) bool {
	for _, it := range items {
		line := asObj(it)
		ok := false
		for _, c := range codingsOf(line["productOrService"]) {
			ok = ok || slices.Contains(pdexProcedureSystems, c.System)
		}
		if !ok {
			return false
		}
		for _, adj := range asList(line["adjudication"]) {
			if asObj(adj)["amount"] == nil {
				return false
			}
		}
	}
	return true
}

// eobCategory is the item category in the system PDex binds (X12 1365 service types under x12.org's URL).
func eobCategory(cs []Code) map[string]any {
	for _, c := range cs {
		if c.System == systemX12ServiceType || c.System == systemPDexServiceType {
			return concept(Code{System: systemPDexServiceType, Code: c.Code, Display: c.Display})
		}
	}
	return nil
}

// deepCopy copies decoded JSON.
func deepCopy[T any](v T) T {
	var out any
	switch t := any(v).(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		out = m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = deepCopy(e)
		}
		out = l
	default:
		return v
	}
	return out.(T)
}
