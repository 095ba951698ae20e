package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// Body is what classification needs of a resource sent in a request.
type Body struct {
	ResourceType string
	ID           string
	// PatientRefs holds every reference to a Patient anywhere in the resource, contained resources and
	// Bundle entries included: relative references as "Patient/[id]" (a version dropped), conditional
	// ("Patient?…") and absolute references verbatim, so another server's Patient/x never reads as ours.
	PatientRefs []string
}

// maxJSONDepth bounds the nesting of a body; FHIR resources stay far below it.
const maxJSONDepth = 64

// parseResource reads a FHIR JSON resource (R4 §2.6.2 JSON representation).
func parseResource(data []byte) (*Body, error) {
	refs, err := scanJSON(data)
	if err != nil {
		return nil, err
	}
	var top struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, unsupported("body is not a FHIR resource")
	}
	if !IsResourceType(top.ResourceType) {
		return nil, unsupported("body resourceType %q", top.ResourceType)
	}
	if top.ID != "" && !IsID(top.ID) {
		return nil, unsupported("body id %q", top.ID)
	}
	return &Body{ResourceType: top.ResourceType, ID: top.ID, PatientRefs: refs}, nil
}

// scanJSON checks that data is one JSON value that every parser reads alike (no duplicate member names,
// bounded depth, nothing after it) and returns the Patient references in it.
func scanJSON(data []byte) ([]string, error) { return scan(data, false) }

// scan is scanJSON; with anyString it takes every string that reads as a Patient reference, not only the
// values of "reference" members.
func scan(data []byte, anyString bool) ([]string, error) {
	if !utf8.Valid(data) {
		return nil, unsupported("body is not UTF-8")
	}
	refs := []string{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*jsonFrame
	done := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) && done {
			return refs, nil
		}
		if err != nil || done {
			return nil, unsupported("body is not one JSON value")
		}
		var top *jsonFrame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				done = endValue(stack)
				continue
			}
			k := tok.(string) // the decoder only yields strings in key position
			if top.seen[k] {
				return nil, unsupported("duplicate JSON member %q", k)
			}
			top.seen[k], top.key, top.wantKey = true, k, false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxJSONDepth {
				return nil, unsupported("body nested too deep")
			}
			obj := tok == json.Delim('{')
			f := &jsonFrame{object: obj, wantKey: obj}
			if obj {
				f.seen = map[string]bool{}
			}
			stack = append(stack, f)
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			done = endValue(stack)
			continue
		}
		if s, ok := tok.(string); ok && (anyString || top != nil && top.object && top.key == "reference") {
			if ref, ok := patientRef(s); ok {
				refs = append(refs, ref)
			}
		}
		done = endValue(stack)
	}
}

// jsonFrame is an object or array scanJSON is inside.
type jsonFrame struct {
	object  bool
	wantKey bool
	key     string
	seen    map[string]bool
}

// endValue records that a value ended inside the innermost frame; it reports whether that was the top level.
func endValue(stack []*jsonFrame) bool {
	if len(stack) == 0 {
		return true
	}
	if top := stack[len(stack)-1]; top.object {
		top.wantKey = true
	}
	return false
}

// patientRef reports whether a Reference.reference string points at a Patient (R4 §2.3.0 references).
func patientRef(ref string) (string, bool) {
	switch {
	case strings.HasPrefix(ref, "Patient/"):
		id, rest, _ := strings.Cut(ref[len("Patient/"):], "/")
		if IsID(id) && (rest == "" || strings.HasPrefix(rest, "_history/") && IsID(rest[len("_history/"):])) {
			return "Patient/" + id, true
		}
		return ref, true
	case strings.HasPrefix(ref, "Patient?"): // conditional reference, R4 §3.1.0.11.7
		return ref, true
	case strings.Contains(ref, "://") && (strings.Contains(ref, "/Patient/") || strings.Contains(ref, "/Patient?")):
		return ref, true
	}
	return "", false
}
