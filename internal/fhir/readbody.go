package fhir

import "fmt"

func errMediaType(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupportedMediaType, fmt.Sprintf(format, args...))
}

// readBody checks the body against what the interaction takes and reads it.
func readBody(r *Request, kind bodyKind, contentType string, body []byte, depth int) error {
	if len(body) == 0 {
		switch kind {
		case noBody, formBody, operationBody:
			return nil
		}
		return unsupported("%s without a body", r.Interaction)
	}
	if kind == noBody {
		return unsupported("a body on %s %s", r.Method, r.Interaction)
	}
	mt, err := mediaType(contentType)
	if err != nil {
		return err
	}
	switch kind {
	case formBody:
		if mt != mtForm {
			return errMediaType("%s body for a _search", mt)
		}
		params, err := ParseForm(string(body))
		if err != nil {
			return err
		}
		r.Params = append(r.Params, params...) // query and body both count, R4 §3.1.0.9
		return nil
	case patchBody:
		return readPatch(r, mt, body)
	}
	if mt != mtFHIRJSON && mt != mtJSON {
		return errMediaType("%s body for %s", mt, r.Interaction)
	}
	switch kind {
	case resourceBody:
		return readResource(r, body)
	case bundleBody:
		return readBundle(r, body, depth)
	default: // operationBody
		r.Body, err = parseResource(body)
		return err
	}
}

// readResource reads the resource of a create or update: its type is the URL's, and an update's id is the
// URL's id (R4 §3.1.0.4: "an id element that has an identical value to the [id] in the URL").
func readResource(r *Request, body []byte) error {
	b, err := parseResource(body)
	if err != nil {
		return err
	}
	if b.ResourceType != r.ResourceType {
		return unsupported("a %s body sent to %s", b.ResourceType, r.ResourceType)
	}
	if r.Interaction == Update && !r.Conditional && b.ID != r.ID {
		return unsupported("body id %q differs from the URL id %q", b.ID, r.ID)
	}
	r.Body = b
	return nil
}

func readPatch(r *Request, mt string, body []byte) error {
	var err error
	switch mt {
	case mtJSONPatch:
		r.Patch, err = parseJSONPatch(body)
	case mtFHIRJSON, mtJSON:
		r.Patch, err = parseFHIRPathPatch(body)
	default:
		return errMediaType("%s body for a patch", mt)
	}
	return err
}
