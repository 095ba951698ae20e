package fhir

// PolicyInput renders the request as the policies read it (input.request). Every list is present and
// non-nil; operation, compartment, body, patch and entries are present only when the request has them.
func (r Request) PolicyInput() map[string]any {
	in := map[string]any{
		"method":         r.Method,
		"interaction":    string(r.Interaction),
		"resource_type":  r.ResourceType,
		"id":             r.ID,
		"version_id":     r.VersionID,
		"conditional":    r.Conditional,
		"params":         paramsInput(r.Params),
		"patient_params": anyList(PatientCompartment[r.ResourceType]),
	}
	if o := r.Operation; o != nil {
		in["operation"] = map[string]any{"name": o.Name, "level": o.Level}
	}
	if c := r.Compartment; c != nil {
		in["compartment"] = map[string]any{"type": c.Type, "id": c.ID}
	}
	if b := r.Body; b != nil {
		in["body"] = map[string]any{"resource_type": b.ResourceType, "id": b.ID, "patient_refs": anyList(b.PatientRefs)}
	}
	if p := r.Patch; p != nil {
		in["patch"] = map[string]any{"format": p.Format, "paths": anyList(p.Paths), "patient_refs": anyList(p.PatientRefs)}
	}
	if r.Interaction == Batch || r.Interaction == Transaction {
		entries := make([]any, len(r.Entries))
		for i, e := range r.Entries {
			entries[i] = e.PolicyInput()
		}
		in["entries"] = entries
	}
	return in
}

func paramsInput(params []Param) []any {
	out := make([]any, len(params))
	for i, p := range params {
		m := map[string]any{"key": p.Key, "name": p.Name, "modifier": p.Modifier, "target_type": p.TargetType,
			"chain": anyList(p.Chain), "values": anyList(p.Values)}
		if h := p.Has; h != nil {
			m["has"] = map[string]any{"target_type": h.TargetType, "ref_param": h.RefParam, "param": h.Param}
		}
		out[i] = m
	}
	return out
}

// anyList converts to []any, the shape OPA reads without reflection; nil becomes empty.
func anyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
