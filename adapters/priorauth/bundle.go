package priorauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformed is the kind of every structural refusal of a PAS Bundle: the client gets 400 with the message.
var ErrMalformed = errors.New("malformed PAS bundle")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// maxNesting bounds how deep a Bundle's JSON may nest; PAS resources stay far below it.
const maxNesting = 64

// BundleEntry is one entry of a Bundle: its fullUrl and resource.
type BundleEntry struct {
	FullURL  string
	Resource map[string]any
}

// Type is the entry resource's resourceType.
func (e *BundleEntry) Type() string { s, _ := e.Resource["resourceType"].(string); return s }

// ID is the entry resource's id ("" when none).
func (e *BundleEntry) ID() string { s, _ := e.Resource["id"].(string); return s }

// Submission is a parsed PAS request (or inquiry) Bundle: the Claim, every entry by fullUrl and the Claim's
// parts fhirwall decides on.
type Submission struct {
	// Bundle is the Bundle alone as JSON (unwrapped from Parameters): what the validator checks.
	Bundle  []byte
	Entries []*BundleEntry
	byURL   map[string]*BundleEntry
	Claim   *BundleEntry

	// The Claim's parts, resolved inside the Bundle.
	Patient    *BundleEntry   // Claim.patient
	Insurer    *BundleEntry   // Claim.insurer
	Provider   *BundleEntry   // Claim.provider (Organization or PractitionerRole; Practitioner tolerated)
	Coverages  []*BundleEntry // Claim.insurance[].coverage
	Identifier string         // Claim.identifier[0] as system|value ("" when none)
	ClaimType  Code           // Claim.type's first coding
	Priority   string         // Claim.priority code (processpriority)
	// LevelOfService is the X12 1338 code of extension-levelOfServiceCode ("" when absent).
	LevelOfService string
	Items          []ClaimItem
}

// ClaimItem is one Claim.item.
type ClaimItem struct {
	Sequence       int
	Codes          []Code // productOrService codings
	Category       []Code // category codings
	Quantity       float64
	ServicedDate   string
	ServicedPeriod map[string]any
	Net            map[string]any // Money, when the Claim gives one (item.net)
	// CodeRange: the item asks for a range of codes (PAS extension-productOrServiceCodeEnd), which no rule
	// can judge by its first code: it goes to a reviewer.
	CodeRange bool
	raw       map[string]any
}

// PAS 2.0.1 URLs and code systems this file reads.
const (
	extLevelOfService  = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-levelOfServiceCode"
	extCodeEnd         = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-productOrServiceCodeEnd"
	systemLevelOfSvc   = "https://codesystem.x12.org/005010/1338"
	systemProcPriority = "http://terminology.hl7.org/CodeSystem/processpriority"
)

// ParseSubmission parses a $submit or $inquire body: a PAS Bundle, or a Parameters whose "resource" parameter
// holds it (Claim-submit and Claim-inquiry OperationDefinitions, PAS 2.0.1). It refuses, with an ErrMalformed
// error, what PAS forbids structurally before any validator sees it (PAS 2.0.1 specification §"Claim
// submission": the first entry SHALL be the Claim; every resource the Claim references, and those they
// reference, SHALL be in the Bundle; JSON only).
func ParseSubmission(body []byte) (*Submission, error) {
	root, err := decodeJSONObject(body)
	if err != nil {
		return nil, err
	}
	bundle, err := unwrap(root)
	if err != nil {
		return nil, err
	}
	s, err := parseEntries(bundle)
	if err != nil {
		return nil, err
	}
	if s.Entries[0].Type() != "Claim" {
		return nil, malformed("the first entry must be the Claim (PAS: the first entry SHALL be the Claim)")
	}
	for _, e := range s.Entries[1:] {
		if e.Type() == "Claim" {
			return nil, malformed("the Bundle holds more than one Claim")
		}
	}
	s.Claim = s.Entries[0]
	if err := s.readClaim(); err != nil {
		return nil, err
	}
	if s.Bundle, err = json.Marshal(bundle); err != nil {
		return nil, malformed("bundle: %v", err)
	}
	return s, nil
}

// decodeObject decodes a JSON object, numbers kept as written.
func decodeJSONObject(body []byte) (map[string]any, error) {
	if err := checkNesting(body); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, malformed("the body is not JSON")
	}
	if dec.More() {
		return nil, malformed("the body holds more than one JSON value")
	}
	o, ok := v.(map[string]any)
	if !ok {
		return nil, malformed("the body is not a JSON object")
	}
	return o, nil
}

// checkNesting refuses JSON nested deeper than maxNesting (strings are skipped).
func checkNesting(b []byte) error {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			if depth++; depth > maxNesting {
				return malformed("the JSON nests deeper than %d", maxNesting)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// unwrap returns the Bundle: the body itself, or the one "resource" parameter of a Parameters.
func unwrap(root map[string]any) (map[string]any, error) {
	switch asStr(root["resourceType"]) {
	case "Bundle":
		return root, nil
	case "Parameters":
		var found map[string]any
		for _, p := range asList(root["parameter"]) {
			po := asObj(p)
			if asStr(po["name"]) != "resource" {
				continue
			}
			if found != nil {
				return nil, malformed("the Parameters hold more than one resource parameter")
			}
			if found = asObj(po["resource"]); found == nil || asStr(found["resourceType"]) != "Bundle" {
				return nil, malformed("the resource parameter does not hold a Bundle")
			}
		}
		if found == nil {
			return nil, malformed("the Parameters hold no resource parameter")
		}
		return found, nil
	}
	return nil, malformed("the body is not a Bundle")
}

// parseEntries reads a collection Bundle's entries, each with a unique fullUrl and a resource, and checks that
// every reference in every resource resolves inside the Bundle.
func parseEntries(bundle map[string]any) (*Submission, error) {
	if asStr(bundle["type"]) != "collection" {
		return nil, malformed("the Bundle's type must be collection")
	}
	raw, ok := bundle["entry"].([]any)
	if !ok || len(raw) == 0 {
		return nil, malformed("the Bundle has no entries")
	}
	s := &Submission{byURL: map[string]*BundleEntry{}}
	for i, r := range raw {
		eo := asObj(r)
		e := &BundleEntry{FullURL: asStr(eo["fullUrl"]), Resource: asObj(eo["resource"])}
		switch {
		case eo == nil:
			return nil, malformed("entry %d is not an object", i)
		case e.FullURL == "":
			return nil, malformed("entry %d has no fullUrl", i)
		case e.Resource == nil || e.Type() == "":
			return nil, malformed("entry %d has no resource", i)
		case s.byURL[e.FullURL] != nil:
			return nil, malformed("fullUrl %q appears twice", e.FullURL)
		}
		s.byURL[e.FullURL] = e
		s.Entries = append(s.Entries, e)
	}
	for _, e := range s.Entries {
		var bad error
		walkReferences(e.Resource, func(ref map[string]any) {
			r := asStr(ref["reference"])
			if bad == nil && !strings.HasPrefix(r, "#") && s.Resolve(e, r) == nil {
				bad = malformed("the reference %q in %s does not resolve inside the Bundle", r, e.FullURL)
			}
		})
		if bad != nil {
			return nil, bad
		}
	}
	return s, nil
}

// walkReferences calls fn with every Reference (an object with a string "reference") in v, contained
// resources included.
func walkReferences(v any, fn func(map[string]any)) {
	switch t := v.(type) {
	case map[string]any:
		if _, ok := t["reference"].(string); ok {
			fn(t)
		}
		for _, c := range t {
			walkReferences(c, fn)
		}
	case []any:
		for _, c := range t {
			walkReferences(c, fn)
		}
	}
}

// Resolve finds the entry a reference written in from points to (R4 §Bundle "Resolving references in
// Bundles"): an absolute URL or urn:uuid/urn:oid matches a fullUrl; a relative Type/id is read against the
// base of from's RESTful fullUrl, else as the one entry whose resource is Type/id. A version is ignored.
func (s *Submission) Resolve(from *BundleEntry, ref string) *BundleEntry {
	if ref == "" {
		return nil
	}
	if i := strings.Index(ref, "/_history/"); i > 0 {
		ref = ref[:i]
	}
	if e := s.byURL[ref]; e != nil {
		return e
	}
	if strings.HasPrefix(ref, "urn:") || strings.Contains(ref, "://") {
		return nil
	}
	parts := strings.Split(ref, "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return nil
	}
	if from != nil {
		if base, ok := restBase(from); ok {
			if e := s.byURL[base+ref]; e != nil {
				return e
			}
		}
	}
	var found *BundleEntry
	for _, e := range s.Entries {
		if e.Type() == parts[0] && e.ID() == parts[1] {
			if found != nil {
				return nil // two candidates: not resolvable
			}
			found = e
		}
	}
	return found
}

// restBase is the server base of a RESTful fullUrl ".../Type/id" (with its trailing slash).
func restBase(e *BundleEntry) (string, bool) {
	suffix := e.Type() + "/" + e.ID()
	if e.ID() == "" || !strings.HasSuffix(e.FullURL, "/"+suffix) || !strings.Contains(e.FullURL, "://") {
		return "", false
	}
	return strings.TrimSuffix(e.FullURL, suffix), true
}

// ref resolves the Reference at the Claim element v (an object), "" and nil when absent.
func (s *Submission) ref(from *BundleEntry, v any) *BundleEntry {
	return s.Resolve(from, asStr(asObj(v)["reference"]))
}

// readClaim reads the Claim's parts.
func (s *Submission) readClaim() error {
	c := s.Claim.Resource
	if asStr(c["use"]) != "preauthorization" {
		return malformed("Claim.use must be preauthorization")
	}
	if s.Patient = s.ref(s.Claim, c["patient"]); s.Patient == nil || s.Patient.Type() != "Patient" {
		return malformed("Claim.patient must reference a Patient in the Bundle")
	}
	if s.Insurer = s.ref(s.Claim, c["insurer"]); s.Insurer == nil || s.Insurer.Type() != "Organization" {
		return malformed("Claim.insurer must reference an Organization in the Bundle")
	}
	s.Provider = s.ref(s.Claim, c["provider"])
	if s.Provider == nil {
		return malformed("Claim.provider must reference a resource in the Bundle")
	}
	switch s.Provider.Type() {
	case "Organization", "PractitionerRole", "Practitioner":
	default:
		return malformed("Claim.provider must be an Organization, PractitionerRole or Practitioner")
	}
	for _, ins := range asList(c["insurance"]) {
		if cov := s.ref(s.Claim, asObj(ins)["coverage"]); cov != nil {
			s.Coverages = append(s.Coverages, cov)
		}
	}
	if ids := asList(c["identifier"]); len(ids) > 0 {
		id := asObj(ids[0])
		if v := asStr(id["value"]); v != "" {
			s.Identifier = asStr(id["system"]) + "|" + v
		}
	}
	if cs := codingsOf(c["type"]); len(cs) > 0 {
		s.ClaimType = cs[0]
	}
	for _, cd := range codingsOf(c["priority"]) {
		if cd.System == systemProcPriority {
			s.Priority = cd.Code
		}
	}
	for _, x := range asList(c["extension"]) {
		if asStr(asObj(x)["url"]) == extLevelOfService {
			for _, cd := range codingsOf(asObj(x)["valueCodeableConcept"]) {
				if cd.System == systemLevelOfSvc {
					s.LevelOfService = cd.Code
				}
			}
		}
	}
	seen := map[int]bool{}
	for i, it := range asList(c["item"]) {
		io := asObj(it)
		seq, ok := asInt(io["sequence"])
		if io == nil || !ok || seq < 1 {
			return malformed("Claim.item[%d] has no positive sequence", i)
		}
		if seen[seq] {
			return malformed("Claim.item sequence %d appears twice", seq)
		}
		seen[seq] = true
		item := ClaimItem{Sequence: seq, Codes: codingsOf(io["productOrService"]), Category: codingsOf(io["category"]),
			ServicedDate: asStr(io["servicedDate"]), ServicedPeriod: asObj(io["servicedPeriod"]), Net: asObj(io["net"]), raw: io}
		if q, ok := asFloat(asObj(io["quantity"])["value"]); ok {
			item.Quantity = q
		}
		for _, e := range asList(io["extension"]) {
			item.CodeRange = item.CodeRange || asStr(asObj(e)["url"]) == extCodeEnd
		}
		s.Items = append(s.Items, item)
	}
	if len(s.Items) == 0 {
		return malformed("the Claim has no items")
	}
	return nil
}

// Identifiers are the system|value identifiers of a resource (those without a system or value are left out:
// nothing can be matched on them).
func Identifiers(res map[string]any) []string {
	var out []string
	for _, id := range asList(res["identifier"]) {
		o := asObj(id)
		if sys, v := asStr(o["system"]), asStr(o["value"]); sys != "" && v != "" {
			out = append(out, sys+"|"+v)
		}
	}
	return out
}

// Small readers over decoded FHIR JSON: a value of an unexpected type reads as absent.

func asObj(v any) map[string]any { o, _ := v.(map[string]any); return o }
func asList(v any) []any         { l, _ := v.([]any); return l }
func asStr(v any) string         { s, _ := v.(string); return s }

func codingsOf(cc any) []Code {
	var out []Code
	for _, c := range asList(asObj(cc)["coding"]) {
		o := asObj(c)
		if o == nil {
			continue
		}
		out = append(out, Code{System: asStr(o["system"]), Code: asStr(o["code"]), Display: asStr(o["display"])})
	}
	return out
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.Atoi(string(n))
		return i, err == nil
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}
