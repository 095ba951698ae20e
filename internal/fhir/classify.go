package fhir

import (
	"mime"
	"strings"
)

// bodyKind is what a classified route expects in the request body.
type bodyKind int

const (
	noBody        bodyKind = iota
	resourceBody           // create, update: the resource (R4 §3.1.0.4, §3.1.0.5)
	patchBody              // patch: JSON Patch or FHIRPath Patch (R4 §3.1.0.6)
	bundleBody             // batch/transaction (R4 §3.1.0.11)
	formBody               // POST _search (R4 §3.1.0.9)
	operationBody          // POST $op: Parameters or a resource, may be empty (R4 §3.1.0.13)
)

// Media types of request bodies (R4 §3.1.0.1.10 content types).
const (
	mtFHIRJSON  = "application/fhir+json"
	mtJSON      = "application/json"
	mtJSONPatch = "application/json-patch+json"
	mtForm      = "application/x-www-form-urlencoded"
)

// maxDepth is how deep classification recurses: a batch/transaction and its entries, never a bundle in an
// entry.
const maxDepth = 1

func classify(method string, segs []string, rawQuery string, h headers, body []byte, depth int) (Request, error) {
	params, query, err := parseForm(rawQuery)
	if err != nil {
		return Request{}, err
	}
	r := Request{Method: method, Params: params, Query: query, Prefer: h.prefer}
	kind, err := route(&r, segs)
	if err != nil {
		return Request{}, err
	}
	if (r.Interaction == Batch || r.Interaction == Transaction) && depth >= maxDepth {
		return Request{}, unsupported("a bundle inside a bundle")
	}
	if err := conditional(&r, h); err != nil {
		return Request{}, err
	}
	if err := readBody(&r, kind, h.contentType, body, depth); err != nil {
		return Request{}, err
	}
	return r, nil
}

// route sets the interaction from the method and the path (R4 §3.1.0 summary table) and says what body the
// interaction takes.
func route(r *Request, segs []string) (bodyKind, error) {
	switch r.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE":
	default: // HEAD is not an R4 interaction; OPTIONS, TRACE and the rest are not FHIR at all
		return 0, unsupported("method %q", r.Method)
	}
	switch {
	case len(segs) == 0:
		return routeBase(r)
	case len(segs) == 1 && segs[0] == "metadata":
		return onlyGET(r, Capabilities)
	case len(segs) == 2 && segs[0] == ".well-known" && segs[1] == "smart-configuration":
		return onlyGET(r, SmartConfiguration)
	case len(segs) == 1 && segs[0] == "_history":
		return onlyGET(r, HistorySystem)
	case len(segs) == 1 && segs[0] == "_search":
		return onlyPOST(r, SearchSystem, formBody)
	case len(segs) == 1 && isOperationName(segs[0]):
		return operation(r, segs[0], LevelSystem)
	}
	if !IsResourceType(segs[0]) {
		return 0, unsupported("%q is not an R4 resource type", segs[0])
	}
	r.ResourceType = segs[0]
	switch len(segs) {
	case 1:
		return routeType(r)
	case 2:
		return routeTypeChild(r, segs[1])
	}
	if !IsID(segs[1]) {
		return 0, unsupported("%q is not a resource id", segs[1])
	}
	r.ID = segs[1]
	switch {
	case len(segs) == 3 && segs[2] == "_history":
		return onlyGET(r, HistoryInstance)
	case len(segs) == 3 && isOperationName(segs[2]):
		return operation(r, segs[2], LevelInstance)
	case len(segs) == 3:
		return routeCompartment(r, segs[2])
	case len(segs) == 4 && segs[2] == "_history" && IsID(segs[3]):
		r.VersionID = segs[3]
		return onlyGET(r, VRead)
	}
	return 0, unsupported("path /%s", strings.Join(segs, "/"))
}

// routeBase: GET [base]?… is a system search or a HAPI paging link; POST [base] a batch or transaction.
func routeBase(r *Request) (bodyKind, error) {
	switch r.Method {
	case "GET":
		if _, paging := r.Query["_getpages"]; paging {
			r.Interaction = Paging
		} else {
			r.Interaction = SearchSystem
		}
		return noBody, nil
	case "POST":
		r.Interaction = Batch // Transaction once the bundle's type is read
		return bundleBody, nil
	}
	return 0, unsupported("%s on the base", r.Method)
}

// routeType: [base]/[type]. PUT, PATCH and DELETE here are conditional and need criteria (R4 §3.1.0.4.3,
// §3.1.0.6, §3.1.0.7.1).
func routeType(r *Request) (bodyKind, error) {
	switch r.Method {
	case "GET":
		r.Interaction = SearchType
		return noBody, nil
	case "POST":
		r.Interaction = Create
		return resourceBody, nil
	case "PUT":
		r.Interaction, r.Conditional = Update, true
		return resourceBody, nil
	case "PATCH":
		r.Interaction, r.Conditional = Patch, true
		return patchBody, nil
	default: // DELETE
		r.Interaction, r.Conditional = Delete, true
		return noBody, nil
	}
}

// routeTypeChild: [base]/[type]/_history, /_search, /$op or /[id].
func routeTypeChild(r *Request, seg string) (bodyKind, error) {
	switch {
	case seg == "_history":
		return onlyGET(r, HistoryType)
	case seg == "_search":
		return onlyPOST(r, SearchType, formBody)
	case isOperationName(seg):
		return operation(r, seg, LevelType)
	case !IsID(seg):
		return 0, unsupported("%q is not a resource id", seg)
	}
	r.ID = seg
	switch r.Method {
	case "GET":
		r.Interaction = Read
		return noBody, nil
	case "PUT":
		r.Interaction = Update
		return resourceBody, nil
	case "PATCH":
		r.Interaction = Patch
		return patchBody, nil
	case "DELETE":
		r.Interaction = Delete
		return noBody, nil
	}
	return 0, unsupported("POST to a resource id")
}

// compartmentTypes are the R4 compartments (R4 §3.1.0.9.2 compartment search, compartmentdefinition.html).
var compartmentTypes = map[string]bool{"Patient": true, "Encounter": true, "RelatedPerson": true, "Practitioner": true, "Device": true}

// routeCompartment: GET [base]/[Compartment]/[id]/[type] or /* (R4 §3.1.0.9.2).
func routeCompartment(r *Request, target string) (bodyKind, error) {
	if !compartmentTypes[r.ResourceType] || target != "*" && !IsResourceType(target) {
		return 0, unsupported("compartment search %s/%s/%s", r.ResourceType, r.ID, target)
	}
	r.Compartment = &Compartment{Type: r.ResourceType, ID: r.ID}
	r.ResourceType, r.ID = target, ""
	return onlyGET(r, SearchCompartment)
}

// operation: $op by GET (parameters in the query) or POST (R4 §3.1.0.13, operations.html §2.36.0.1).
func operation(r *Request, seg, level string) (bodyKind, error) {
	r.Operation = &OperationName{Name: seg[1:], Level: level}
	switch r.Method {
	case "GET":
		return onlyGET(r, Operation)
	case "POST":
		return onlyPOST(r, Operation, operationBody)
	case "DELETE":
		// Bulk Data 2.0 §Delete a Bulk Data Request: DELETE on the status URL cancels the job. HAPI's status
		// URL is the system-level $export-poll-status; no other operation is deleted.
		if level == "system" && r.Operation.Name == "export-poll-status" {
			r.Interaction = Operation
			return noBody, nil
		}
	}
	return 0, unsupported("%s on an operation", r.Method)
}

func onlyGET(r *Request, i Interaction) (bodyKind, error) {
	if r.Method != "GET" {
		return 0, unsupported("%s for %s", r.Method, i)
	}
	r.Interaction = i
	return noBody, nil
}

func onlyPOST(r *Request, i Interaction, kind bodyKind) (bodyKind, error) {
	if r.Method != "POST" {
		return 0, unsupported("%s for %s", r.Method, i)
	}
	r.Interaction = i
	return kind, nil
}

// resultParams shape a response and select nothing; they are no criteria for a conditional interaction.
var resultParams = map[string]bool{"_format": true, "_pretty": true, "_summary": true, "_elements": true}

// conditional handles If-None-Exist (conditional create, R4 §3.1.0.8) and checks that conditional update,
// patch and delete carry criteria: without any, a server may apply them to every resource of the type.
func conditional(r *Request, h headers) error {
	if h.ifNoneExist != nil {
		if r.Interaction != Create {
			return unsupported("If-None-Exist on %s", r.Interaction)
		}
		params, err := ParseForm(strings.TrimPrefix(*h.ifNoneExist, "?"))
		if err != nil {
			return err
		}
		r.Conditional = true
		r.Params = append(r.Params, params...)
	}
	if r.Conditional && !hasCriteria(r.Params) {
		return unsupported("conditional %s without criteria", r.Interaction)
	}
	return nil
}

func hasCriteria(params []Param) bool {
	for _, p := range params {
		if !resultParams[p.Name] {
			return true
		}
	}
	return false
}

// mediaType reads a Content-Type: a media type and at most charset=utf-8 and fhirVersion=4.0 (R4 §3.1.0.1.10).
func mediaType(ct string) (string, error) {
	if ct == "" {
		return "", errMediaType("a body without a Content-Type")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", errMediaType("Content-Type %q", ct)
	}
	for k, v := range params {
		switch {
		case k == "charset" && strings.EqualFold(v, "utf-8"):
		case k == "fhirversion" && v == "4.0":
		default:
			return "", errMediaType("Content-Type parameter %s=%s", k, v)
		}
	}
	return mt, nil
}
