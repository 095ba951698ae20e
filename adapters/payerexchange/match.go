package payerexchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// The matching rules, in one place (HRex 1.0.0 §member-match: "a deterministic match will require a match on
// member id or subscriber id at a minimum"). A submitted member matches a Patient on the FHIR server when all
// of these hold:
//
//  1. an id: one of the ids sent (CoverageToMatch.subscriberId, CoverageToMatch.identifier.value,
//     MemberPatient.identifier.value of type MB, UMB or SN) equals an identifier value of a Coverage on the
//     FHIR server whose beneficiary is that Patient (token search Coverage?identifier=, any system);
//  2. demographics: the Patient has a name whose family equals the MemberPatient's first family name, and
//     whose given names include its first given name (case and surrounding space ignored), the same
//     birthDate (exactly, at the precision sent) and the same gender;
//  3. the coverage is within reach of CMS-0057-F: not entered-in-error or cancelled, and not ended more than
//     five years before now (Payer-to-Payer covers five years of data after coverage ends).
//
// Exactly one such Patient is a match; none, or more than one, is not (422, the same answer either way and
// the same as a match whose Consent does not permit sharing: the answer must not tell a payer that somebody
// is a member unless it may have their data).

// memberIDTypes are the identifier types of MemberPatient that carry a member or subscriber id (v2-0203 MB,
// SN; HRex hrex-temp UMB).
var memberIDTypes = []string{"MB", "UMB", "SN"}

// maxIDs bounds the ids one submitted member may carry (each is a search value), maxIDLength each id.
const (
	maxIDs      = 10
	maxIDLength = 64
)

// validMemberID: an id fhirwall will put in a token search. What the FHIR server would refuse (or read as
// search syntax: "," ORs, "|" names a system, "\\" escapes, "$" is reserved) is the caller's mistake, a 400,
// never a failed lookup that counts against the server.
func validMemberID(v string) bool {
	if v == "" || len(v) > maxIDLength {
		return false
	}
	for _, r := range v {
		if r <= ' ' || r > '~' || strings.ContainsRune(",|\\$", r) {
			return false
		}
	}
	return true
}

// submission is one member as the new payer sent it.
type submission struct {
	patient   object // MemberPatient
	coverage  object // CoverageToMatch
	link      object // CoverageToLink (optional)
	consent   object // Consent
	family    string
	given     string
	birthDate string
	gender    string
	ids       []string
}

// parseSubmission reads the parts of one member (HRex member-match-in, or one MemberBundle of PDex
// multi-member-match-in); the error says what is missing, in words for the caller.
func parseSubmission(parts []any) (*submission, error) {
	s := &submission{}
	seen := map[string]bool{}
	for _, p := range parts {
		po := obj(p)
		res := obj(po["resource"])
		name := str(po["name"])
		if seen[name] {
			// HRex member-match-in: each is 0..1 or 1..1; with two, which one was meant is a guess.
			return nil, fmt.Errorf("parameter %s appears more than once", name)
		}
		seen[name] = true
		var want string
		switch name {
		case "MemberPatient":
			s.patient, want = res, "Patient"
		case "CoverageToMatch":
			s.coverage, want = res, "Coverage"
		case "CoverageToLink":
			s.link, want = res, "Coverage"
		case "Consent":
			s.consent, want = res, "Consent"
		default:
			return nil, fmt.Errorf("parameter %q is not one of MemberPatient, CoverageToMatch, CoverageToLink, Consent", name)
		}
		if res == nil || str(res["resourceType"]) != want {
			return nil, fmt.Errorf("parameter %s must carry a %s resource", name, want)
		}
		if err := wellFormed(name, res); err != nil {
			return nil, err
		}
	}
	switch {
	case s.patient == nil:
		return nil, errors.New("MemberPatient is required")
	case s.coverage == nil:
		return nil, errors.New("CoverageToMatch is required")
	case s.consent == nil:
		return nil, errors.New("Consent is required: Payer-to-Payer shares data only with the member's opt-in")
	}
	for _, n := range list(s.patient["name"]) {
		no := obj(n)
		if s.family == "" {
			s.family = str(no["family"])
			if g := list(no["given"]); len(g) > 0 {
				s.given = str(g[0])
			}
		}
	}
	s.birthDate, s.gender = str(s.patient["birthDate"]), str(s.patient["gender"])
	if fold(s.family) == "" || fold(s.given) == "" || s.birthDate == "" || s.gender == "" {
		return nil, errors.New("MemberPatient needs name.family, name.given, birthDate and gender")
	}
	if _, _, err := fhir.ParseDate(s.birthDate); err != nil {
		return nil, errors.New("MemberPatient.birthDate is not a FHIR date")
	}
	add := func(v string) {
		v = strings.TrimSpace(v)
		if v != "" && !slices.Contains(s.ids, v) {
			s.ids = append(s.ids, v)
		}
	}
	add(str(s.coverage["subscriberId"]))
	for _, id := range list(s.coverage["identifier"]) {
		add(str(obj(id)["value"]))
	}
	for _, id := range list(s.patient["identifier"]) {
		io := obj(id)
		for _, t := range memberIDTypes {
			if slices.ContainsFunc(codings(io["type"]), func(c object) bool { return str(c["code"]) == t }) {
				add(str(io["value"]))
				break
			}
		}
	}
	if len(s.ids) == 0 {
		return nil, errors.New("a member or subscriber id is required (CoverageToMatch.subscriberId or identifier, or a MemberPatient identifier of type MB): fhirwall matches deterministically")
	}
	if len(s.ids) > maxIDs {
		return nil, fmt.Errorf("at most %d member or subscriber ids per member", maxIDs)
	}
	for _, v := range s.ids {
		if !validMemberID(v) {
			return nil, fmt.Errorf("member and subscriber ids are 1 to %d printable ASCII characters other than space , | \\ and $", maxIDLength)
		}
	}
	return s, nil
}

// wellFormed refuses a submitted resource whose elements fhirwall reads are not of their FHIR JSON type (a
// subscriberId sent as an array would otherwise read as absent, and the match be made on less than was sent)
// or whose id is not a FHIR id.
func wellFormed(name string, res object) error {
	if id, ok := res["id"]; ok && !fhir.IsID(str(id)) {
		return fmt.Errorf("%s.id is not a FHIR id (1 to 64 of A-Z a-z 0-9 - .)", name)
	}
	scalars := []string{"birthDate", "gender", "subscriberId", "status"}
	lists := []string{"identifier", "name", "policy", "performer"}
	for _, k := range scalars {
		if v, ok := res[k]; ok {
			if _, isString := v.(string); !isString {
				return fmt.Errorf("%s.%s must be a string", name, k)
			}
		}
	}
	for _, k := range lists {
		v, ok := res[k]
		if !ok {
			continue
		}
		l, isList := v.([]any)
		if !isList {
			return fmt.Errorf("%s.%s must be an array", name, k)
		}
		for _, e := range l {
			if _, isObject := e.(map[string]any); !isObject {
				return fmt.Errorf("%s.%s must hold objects", name, k)
			}
		}
	}
	for _, n := range list(res["name"]) {
		if g, ok := obj(n)["given"]; ok {
			if _, isList := g.([]any); !isList {
				return fmt.Errorf("%s.name.given must be an array", name)
			}
		}
		if f, ok := obj(n)["family"]; ok {
			if _, isString := f.(string); !isString {
				return fmt.Errorf("%s.name.family must be a string", name)
			}
		}
	}
	for _, id := range list(res["identifier"]) {
		if v, ok := obj(id)["value"]; ok {
			if _, isString := v.(string); !isString {
				return fmt.Errorf("%s.identifier.value must be a string", name)
			}
		}
	}
	return nil
}

// matchResult is the outcome for one submitted member.
type matchResult struct {
	kind    string // matched, no_match, ambiguous, consent_refused
	patient object // the matched Patient (matched, consent_refused)
	policy  string // the Consent's policy when matched: regular or sensitive
}

// candidates are the FHIR server's Coverages and their beneficiaries found for a set of ids.
type candidates struct {
	coverages []object
	patients  map[string]object // "Patient/<id>" → Patient
}

// lookup finds the Coverages carrying any of ids and their beneficiaries: one search per batch of ids whose
// query stays well inside the URL length servers accept (Tomcat, under HAPI: 8 KiB of request line).
// A sandbox lookup finds synthetic Coverages and beneficiaries only (sandbox.go).
func (a *Adapter) lookup(ctx context.Context, ids []string, sandbox bool) (*candidates, error) {
	c := &candidates{patients: map[string]object{}}
	for len(ids) > 0 {
		n, size := 0, 0
		for n < len(ids) && n < maxLookupIDs && size+len(ids[n])+1 <= maxLookupQuery {
			size += len(ids[n]) + 1
			n++
		}
		if err := a.lookupBatch(ctx, ids[:n], sandbox, c); err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return c, nil
}

// Bounds of one Coverage search: ids per search, and their bytes in the query.
const (
	maxLookupIDs   = 100
	maxLookupQuery = 3000
)

func (a *Adapter) lookupBatch(ctx context.Context, ids []string, sandbox bool, c *candidates) error {
	q := url.Values{"identifier": {strings.Join(ids, ",")}, "_include": {"Coverage:beneficiary"}, "_count": {"200"}}
	err := a.search.Search(ctx, "Coverage", synthetic.Narrow(q, sandbox), func(raw json.RawMessage) error {
		var r object
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		if !synthetic.Usable(r, sandbox) {
			return nil // _tag narrows the Coverages, not the beneficiaries _include brings
		}
		switch str(r["resourceType"]) {
		case "Coverage":
			c.coverages = append(c.coverages, r)
		case "Patient":
			c.patients["Patient/"+str(r["id"])] = r
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("payerexchange: coverage lookup: %w", err)
	}
	return nil
}

// match applies the rules to one submission over the candidates found for its ids.
func (c *candidates) match(s *submission, now time.Time) (object, int) {
	found := map[string]object{}
	for _, cov := range c.coverages {
		if !coverageCarries(cov, s.ids) || !coverageInReach(cov, now) {
			continue
		}
		ref := str(obj(cov["beneficiary"])["reference"])
		p, ok := c.patients[ref]
		if ok && demographicsMatch(p, s) {
			found[ref] = p
		}
	}
	for _, p := range found {
		return p, len(found)
	}
	return nil, 0
}

func coverageCarries(cov object, ids []string) bool {
	for _, id := range list(cov["identifier"]) {
		if slices.Contains(ids, strings.TrimSpace(str(obj(id)["value"]))) {
			return true
		}
	}
	return false
}

// coverageInReach: CMS-0057-F Payer-to-Payer reaches members whose coverage with this payer is current or
// ended within the last five years.
func coverageInReach(cov object, now time.Time) bool {
	switch str(cov["status"]) {
	case "entered-in-error", "cancelled":
		return false
	}
	end := str(obj(cov["period"])["end"])
	if end == "" {
		return true
	}
	_, until, err := fhir.ParseDate(end)
	if err != nil {
		return false
	}
	return until.After(now.AddDate(-5, 0, 0))
}

func demographicsMatch(p object, s *submission) bool {
	if str(p["birthDate"]) != s.birthDate || str(p["gender"]) != s.gender {
		return false
	}
	for _, n := range list(p["name"]) {
		no := obj(n)
		if fold(str(no["family"])) != fold(s.family) {
			continue
		}
		for _, g := range list(no["given"]) {
			if fold(str(g)) == fold(s.given) {
				return true
			}
		}
	}
	return false
}

// noMatch is the one answer to every $member-match that does not end in a shared member: no match, more than
// one, or a Consent that does not let this payer have the data (HRex: 422 when no unique match).
var noMatch = outcome.Refusal{Status: 422, Code: "processing",
	Diagnostics: "No unique member could be matched with the data provided and a Consent that permits sharing with the requesting payer."}

// memberMatch answers HRex 1.0.0 Patient/$member-match: Parameters in, Parameters out with the matched
// member's identifier, after the Consent sent with it was checked and stored.
func (a *Adapter) memberMatch(ctx context.Context, d *decision.Decision, payer string) (decision.Answer, error) {
	parts, err := parametersOf(d.Input.Body, "")
	if err != nil {
		return badRequest(err.Error()), nil
	}
	s, err := parseSubmission(parts)
	if err != nil {
		return badRequest(err.Error()), nil
	}
	c, err := a.lookup(ctx, s.ids, d.Sandbox())
	if err != nil {
		return decision.Answer{}, err
	}
	now := a.now()
	res, err := a.judge(ctx, s, c, payer, now)
	if err != nil {
		return decision.Answer{}, err
	}
	if res.kind != "matched" {
		var patients []string
		if res.patient != nil {
			patients = []string{str(res.patient["id"])}
		}
		ans := decision.RefusalAnswer(noMatch, res.kind)
		ans.Patients = patients
		return ans, nil
	}
	id := str(res.patient["id"])
	if err := a.storeConsent(ctx, s.consent, id, payer, d.Identity.ClientID, d.Sandbox()); err != nil {
		return decision.Answer{}, err
	}
	out := object{"resourceType": "Parameters", "parameter": []any{
		object{"name": "MemberIdentifier", "valueIdentifier": memberIdentifier(res.patient)},
	}}
	if d.Sandbox() {
		synthetic.Tag(out)
	}
	return resourceAnswer(200, out, []string{id}, "matched")
}

// judge matches one submission and checks its Consent for payer.
func (a *Adapter) judge(ctx context.Context, s *submission, c *candidates, payer string, now time.Time) (matchResult, error) {
	p, n := c.match(s, now)
	switch {
	case n == 0:
		return matchResult{kind: "no_match"}, nil
	case n > 1:
		return matchResult{kind: "ambiguous"}, nil
	}
	policy, ok, err := a.consentPermits(ctx, s.consent, payer, now)
	if err != nil {
		return matchResult{}, err
	}
	if !ok {
		return matchResult{kind: "consent_refused", patient: p}, nil
	}
	return matchResult{kind: "matched", patient: p, policy: policy}, nil
}

// memberIdentifier is the member's identifier as this payer knows it (HRex member-match-out: type v2-0203
// MB; the HRex hrex-temp UMB coding beside it names it the payer's unique member id): the Patient's own
// member identifier, else its FHIR id under this server's Patient namespace.
func memberIdentifier(p object) object {
	idType := object{"coding": []any{
		object{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"},
		object{"system": "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp", "code": "UMB"},
	}}
	for _, id := range list(p["identifier"]) {
		io := obj(id)
		for _, c := range codings(io["type"]) {
			if (str(c["code"]) == "MB" || str(c["code"]) == "UMB") && str(io["value"]) != "" {
				out := object{"type": idType, "value": str(io["value"])}
				if sys := str(io["system"]); sys != "" {
					out["system"] = sys
				}
				return out
			}
		}
	}
	return object{"type": idType, "system": "urn:fhirwall:patient-id", "value": str(p["id"])}
}

// parametersOf decodes a Parameters body; with name set, it returns the parts of every parameter of that
// name (PDex MemberBundle), otherwise the top-level parameters.
func parametersOf(body []byte, name string) ([]any, error) {
	var p object
	if err := json.Unmarshal(body, &p); err != nil || str(p["resourceType"]) != "Parameters" {
		return nil, errors.New("the body must be a FHIR Parameters resource in JSON")
	}
	params := list(p["parameter"])
	if name == "" {
		return params, nil
	}
	var out []any
	for _, v := range params {
		po := obj(v)
		if str(po["name"]) != name {
			return nil, fmt.Errorf("parameter %q is not %s", str(po["name"]), name)
		}
		out = append(out, po)
	}
	return out, nil
}
