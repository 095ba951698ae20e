package fhir

import (
	"encoding/json"
)

// Patch formats, R4 §3.1.0.6 patch.
const (
	JSONPatch     = "json-patch"
	FHIRPathPatch = "fhirpath-patch"
)

// PatchBody is what a patch body changes: the paths it touches and the Patient references it writes.
type PatchBody struct {
	Format string
	// Paths holds each operation's JSON Pointer path and "from" (json-patch), or its FHIRPath path, and
	// path.name when the operation names a child (fhirpath-patch).
	Paths       []string
	PatientRefs []string
}

// parseJSONPatch reads an RFC 6902 JSON Patch document.
func parseJSONPatch(data []byte) (*PatchBody, error) {
	if _, err := scanJSON(data); err != nil {
		return nil, err
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  *string         `json:"path"`
		From  *string         `json:"from"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &ops); err != nil || len(ops) == 0 {
		return nil, unsupported("body is not a JSON Patch")
	}
	p := &PatchBody{Format: JSONPatch, Paths: []string{}, PatientRefs: []string{}}
	for _, op := range ops {
		switch op.Op {
		case "add", "remove", "replace", "move", "copy", "test":
		default:
			return nil, unsupported("JSON Patch op %q", op.Op)
		}
		if op.Path == nil || !isPointer(*op.Path) {
			return nil, unsupported("JSON Patch path")
		}
		p.Paths = append(p.Paths, *op.Path)
		if op.Op == "move" || op.Op == "copy" {
			if op.From == nil || !isPointer(*op.From) {
				return nil, unsupported("JSON Patch from")
			}
			p.Paths = append(p.Paths, *op.From)
		}
		refs, err := valueRefs(op.Value)
		if err != nil {
			return nil, err
		}
		p.PatientRefs = append(p.PatientRefs, refs...)
	}
	return p, nil
}

// isPointer: an RFC 6901 JSON Pointer ("" is the whole document).
func isPointer(s string) bool { return s == "" || s[0] == '/' }

// parseFHIRPathPatch reads a FHIRPath Patch: a Parameters resource with one "operation" parameter per
// change, each with parts type, path, name, value[x] (R4 §2.40 fhirpatch).
func parseFHIRPathPatch(data []byte) (*PatchBody, error) {
	b, err := parseResource(data)
	if err != nil {
		return nil, err
	}
	if b.ResourceType != "Parameters" {
		return nil, unsupported("patch body is a %s, not Parameters", b.ResourceType)
	}
	var params struct {
		Parameter []struct {
			Name string            `json:"name"`
			Part []json.RawMessage `json:"part"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(data, &params); err != nil || len(params.Parameter) == 0 {
		return nil, unsupported("body is not a FHIRPath Patch")
	}
	p := &PatchBody{Format: FHIRPathPatch, Paths: []string{}, PatientRefs: []string{}}
	for _, op := range params.Parameter {
		if op.Name != "operation" {
			return nil, unsupported("FHIRPath Patch parameter %q", op.Name)
		}
		if err := p.addOperation(op.Part); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *PatchBody) addOperation(parts []json.RawMessage) error {
	var typ, path, name string
	var values []json.RawMessage
	for _, raw := range parts {
		var part map[string]json.RawMessage
		if err := json.Unmarshal(raw, &part); err != nil {
			return unsupported("FHIRPath Patch part")
		}
		var partName string
		_ = json.Unmarshal(part["name"], &partName)
		if partName == "value" {
			values = append(values, raw)
		}
		var s string
		_ = json.Unmarshal(part["valueString"], &s)
		if s == "" {
			_ = json.Unmarshal(part["valueCode"], &s)
		}
		switch partName {
		case "type":
			typ = s
		case "path":
			path = s
		case "name":
			name = s
		}
	}
	switch typ {
	case "add", "insert", "delete", "replace", "move":
	default:
		return unsupported("FHIRPath Patch type %q", typ)
	}
	if path == "" {
		return unsupported("FHIRPath Patch without a path")
	}
	p.Paths = append(p.Paths, path)
	if name != "" {
		p.Paths = append(p.Paths, path+"."+name)
	}
	for _, v := range values {
		refs, err := valueRefs(v)
		if err != nil {
			return err
		}
		p.PatientRefs = append(p.PatientRefs, refs...)
	}
	return nil
}

// valueRefs returns the Patient references a patch value writes. A patch can write a reference as a bare
// string ("/subject/reference": "Patient/x") or as parts, so every string in the value that reads as a
// Patient reference counts: over-counting refuses a harmless patch, under-counting would move a resource.
func valueRefs(v json.RawMessage) ([]string, error) {
	if len(v) == 0 {
		return nil, nil
	}
	return scan(v, true)
}
