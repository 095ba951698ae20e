package fhir

import (
	"encoding/json"
	"slices"
	"strings"
)

//go:generate go run ./gen/compartmentpaths -out patient_compartment_paths_gen.go

// UnknownPatient stands for a patient a resource names but whose server id cannot be known: a conditional
// reference (Patient?identifier=…), a malformed Patient reference, or a contained Patient resource. It never
// equals a real id ('?' is not an id character), so a resource carrying one is in nobody's compartment.
const UnknownPatient = "?"

// maxWalkDepth bounds recursion through contained resources and nested elements of hostile input.
const maxWalkDepth = 64

// PatientsOf returns the ids of the patients whose compartment resource (a decoded FHIR resource) is in, and
// whether its type belongs to the R4 Patient compartment at all. A Patient is its own patient; a compartment
// type is its patients' by the references at its compartment paths (PatientCompartmentPaths); any other type
// is in no compartment, but the Patient references it holds anywhere are still reported, so that a Task or a
// Device naming another patient is visible to the caller. Contained resources count for their container: a
// contained resource in another patient's compartment puts the container there too. ids are sorted, unique.
func PatientsOf(resource map[string]any) (patients []string, inCompartment bool) {
	patients, inCompartment = AppendPatientsOf(nil, resource)
	if patients == nil {
		patients = []string{}
	}
	return patients, inCompartment
}

// AppendPatientsOf is PatientsOf appending the ids to dst, so that a caller judging many resources (response
// enforcement) reuses one slice rather than allocating per resource.
func AppendPatientsOf(dst []string, resource map[string]any) (patients []string, inCompartment bool) {
	rt, _ := resource["resourceType"].(string)
	inCompartment = rt == "Patient" || PatientCompartmentPaths[rt] != nil
	set := patientSet{ids: dst, base: len(dst)}
	collectPatients(resource, &set, 0, false)
	slices.Sort(set.ids[set.base:])
	return set.ids, inCompartment
}

// patientSet collects unique ids in ids[base:]: by a linear look for the few a resource usually names, by a
// map past smallPatientSet (a Group of thousands must not cost their square).
type patientSet struct {
	ids  []string
	base int
	big  map[string]struct{}
}

const smallPatientSet = 16

func (s *patientSet) add(id string) {
	if s.big != nil {
		if _, ok := s.big[id]; ok {
			return
		}
		s.big[id] = struct{}{}
		s.ids = append(s.ids, id)
		return
	}
	if slices.Contains(s.ids[s.base:], id) {
		return
	}
	s.ids = append(s.ids, id)
	if len(s.ids)-s.base > smallPatientSet {
		s.big = make(map[string]struct{}, 2*smallPatientSet)
		for _, p := range s.ids[s.base:] {
			s.big[p] = struct{}{}
		}
	}
}

// PatientsOfJSON is PatientsOf for an encoded resource; a body that is not a JSON object is in no compartment
// and names no patient, so callers that must fail closed check the error.
func PatientsOfJSON(raw json.RawMessage) (patients []string, inCompartment bool, err error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false, err
	}
	p, in := PatientsOf(m)
	return p, in, nil
}

// collectPatients records res's patients; contained says res sits in a container's contained[], where ids are
// local to the container.
func collectPatients(res map[string]any, set *patientSet, depth int, contained bool) {
	if depth > maxWalkDepth {
		set.add(UnknownPatient)
		return
	}
	rt, _ := res["resourceType"].(string)
	switch paths := PatientCompartmentPaths[rt]; {
	case rt == "Patient":
		id, _ := res["id"].(string)
		if contained || !IsID(id) {
			id = UnknownPatient
		}
		set.add(id)
	case paths != nil:
		for _, p := range paths {
			walkPath(res, p, set, depth)
		}
	default:
		for k, v := range res {
			if k != "contained" {
				anyReference(v, set, depth+1)
			}
		}
	}
	if contained, ok := res["contained"].([]any); ok {
		for _, c := range contained {
			if m, ok := c.(map[string]any); ok {
				collectPatients(m, set, depth+1, true)
			}
		}
	}
}

// walkPath records the Patient reference of every object found at path below v, descending through arrays at
// every step.
func walkPath(v any, path []string, set *patientSet, depth int) {
	if depth > maxWalkDepth {
		return
	}
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			walkPath(e, path, set, depth+1)
		}
	case map[string]any:
		if len(path) == 0 {
			addReference(t, set)
			return
		}
		if next, ok := t[path[0]]; ok {
			walkPath(next, path[1:], set, depth+1)
		}
	}
}

// anyReference records the Patient references anywhere below v.
func anyReference(v any, set *patientSet, depth int) {
	if depth > maxWalkDepth {
		set.add(UnknownPatient)
		return
	}
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			anyReference(e, set, depth+1)
		}
	case map[string]any:
		if _, isRes := t["resourceType"].(string); isRes {
			// A whole resource inside an element (Parameters.parameter.resource, Bundle.entry.resource):
			// its patients are its container's.
			collectPatients(t, set, depth+1, false)
			return
		}
		addReference(t, set)
		for _, e := range t {
			anyReference(e, set, depth+1)
		}
	}
}

// addReference records the patient a Reference element points at, if it points at one.
func addReference(ref map[string]any, set *patientSet) {
	s, _ := ref["reference"].(string)
	typ, _ := ref["type"].(string)
	if s == "" {
		return // identifier- or display-only: names no resource on this server
	}
	if id, ok := PatientID(s); ok {
		set.add(id)
	} else if typ == "Patient" && !strings.HasPrefix(s, "#") {
		set.add(UnknownPatient)
	}
}

// PatientID reads the Patient id out of a reference string (R4 §2.3.0): relative "Patient/x", absolute
// ".../Patient/x", either with "/_history/v". ok is false for references to other types and contained ("#x")
// references; a reference that names Patient but no readable id (conditional, malformed) is UnknownPatient.
func PatientID(ref string) (id string, ok bool) {
	if ref == "" || ref[0] == '#' || strings.HasPrefix(ref, "urn:") {
		return "", false
	}
	if !strings.Contains(ref, "Patient") {
		return "", false
	}
	// The segments between slashes, read in place (no split: this runs for every reference of every
	// resource enforcement judges).
	s, n := ref, strings.Count(ref, "/")+1
	if n >= 4 {
		head, _ := cutLastSegment(s)
		if head2, seg := cutLastSegment(head); seg == "_history" {
			s, n = head2, n-2
		}
	}
	if n >= 2 {
		head, id := cutLastSegment(s)
		if _, typ := cutLastSegment(head); typ == "Patient" && IsID(id) {
			return id, true
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "Patient" || strings.HasPrefix(seg, "Patient?") {
			return UnknownPatient, true
		}
	}
	return "", false
}

// cutLastSegment splits s at its last slash; without one, last is all of s.
func cutLastSegment(s string) (head, last string) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

// Data categories of FHIR resources, as audit records name them.
const (
	CategoryDemographics  = "demographics"
	CategoryClaims        = "claims"
	CategoryCoverage      = "coverage"
	CategoryLabResults    = "lab-results"
	CategoryVitalSigns    = "vital-signs"
	CategoryClinical      = "clinical"
	CategoryPharmacy      = "pharmacy"
	CategoryClinicalNotes = "clinical-notes"
	CategoryOther         = "other"
)

// DataCategory names the kind of data one returned resource carries, for the audit record. resource may be
// nil: then only the type decides (an Observation is then "clinical"). Bundles and OperationOutcomes carry
// no data of their own and give "".
func DataCategory(resourceType string, resource map[string]any) string {
	switch resourceType {
	case "", "Bundle", "OperationOutcome":
		return ""
	case "Patient":
		return CategoryDemographics
	case "ExplanationOfBenefit", "Claim", "ClaimResponse":
		return CategoryClaims
	case "Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse":
		return CategoryCoverage
	case "Observation":
		// US Core: the observation-category CodeSystem's laboratory and vital-signs codes.
		switch {
		case hasCategory(resource, "laboratory"):
			return CategoryLabResults
		case hasCategory(resource, "vital-signs"):
			return CategoryVitalSigns
		}
		return CategoryClinical
	case "DiagnosticReport":
		if hasCategory(resource, "LAB") { // v2-0074 diagnostic service section
			return CategoryLabResults
		}
		return CategoryClinical
	case "Condition", "Procedure", "AllergyIntolerance", "Immunization", "Encounter", "CarePlan", "CareTeam",
		"Goal", "ImagingStudy", "ServiceRequest", "FamilyMemberHistory", "ClinicalImpression", "Specimen",
		"DeviceUseStatement", "NutritionOrder", "RiskAssessment":
		return CategoryClinical
	case "MedicationRequest", "MedicationDispense", "MedicationStatement", "MedicationAdministration", "Medication":
		return CategoryPharmacy
	case "DocumentReference", "Composition", "DocumentManifest":
		return CategoryClinicalNotes
	default:
		return CategoryOther
	}
}

func hasCategory(resource map[string]any, code string) bool {
	cats, _ := resource["category"].([]any)
	for _, c := range cats {
		cc, _ := c.(map[string]any)
		codings, _ := cc["coding"].([]any)
		for _, cd := range codings {
			m, _ := cd.(map[string]any)
			if s, _ := m["code"].(string); s == code {
				return true
			}
		}
	}
	return false
}
