package fhir

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// MaxEntries bounds the entries of a batch or transaction.
const MaxEntries = 1000

type bundle struct {
	Type  string `json:"type"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
		Request  *struct {
			Method      string `json:"method"`
			URL         string `json:"url"`
			IfNoneExist string `json:"ifNoneExist"`
		} `json:"request"`
	} `json:"entry"`
}

// readBundle reads a batch or transaction Bundle and classifies each entry as its own request
// (R4 §3.1.0.11 batch/transaction).
func readBundle(r *Request, body []byte, depth int) error {
	b, err := parseResource(body)
	if err != nil {
		return err
	}
	if b.ResourceType != "Bundle" {
		return unsupported("a %s posted to the base", b.ResourceType)
	}
	var bd bundle
	if err := json.Unmarshal(body, &bd); err != nil {
		return unsupported("malformed Bundle")
	}
	switch bd.Type {
	case "batch":
		r.Interaction = Batch
	case "transaction":
		r.Interaction = Transaction
	default:
		return unsupported("a %q Bundle posted to the base", bd.Type)
	}
	if len(bd.Entry) > MaxEntries {
		return fmt.Errorf("%w: %d entries", ErrTooLarge, len(bd.Entry))
	}
	r.Body, r.Entries = b, make([]Request, 0, len(bd.Entry))
	for i, e := range bd.Entry {
		if e.Request == nil {
			return unsupported("entry %d has no request", i)
		}
		er, err := classifyEntry(e.Request.Method, e.Request.URL, e.Request.IfNoneExist, e.Resource, depth+1)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		r.Entries = append(r.Entries, er)
	}
	return nil
}

// classifyEntry classifies one entry from its request.method, request.url (relative to the base, may carry a
// query) and resource, as if it had been sent on its own.
func classifyEntry(method, rawURL, ifNoneExist string, resource json.RawMessage, depth int) (Request, error) {
	path, query, _ := strings.Cut(rawURL, "?")
	// An absolute URL ("http://…", "urn:…") or an absolute path ("/…") reaches outside this API's base.
	if strings.ContainsAny(path, ":#") || strings.HasPrefix(path, "/") || strings.Contains(query, "#") {
		return Request{}, unsupported("entry url %q is not relative to the base", rawURL)
	}
	segs, err := segments("/" + path)
	if err != nil {
		return Request{}, err
	}
	h := headers{}
	if ifNoneExist != "" {
		h.ifNoneExist = &ifNoneExist
	}
	body := []byte(nil)
	if len(resource) > 0 && string(resource) != "null" {
		body, h.contentType, err = entryBody(method, resource)
		if err != nil {
			return Request{}, err
		}
	}
	return classify(method, segs, query, h, body, depth)
}

// entryBody is an entry's resource as a request body. A PATCH entry carries a JSON Patch as a Binary
// (R4 §3.1.0.6: "the patch document is a Binary resource" in a batch or transaction), or a FHIRPath Patch.
func entryBody(method string, resource json.RawMessage) ([]byte, string, error) {
	if method != "PATCH" {
		return resource, mtFHIRJSON, nil
	}
	var bin struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         string `json:"data"`
	}
	if err := json.Unmarshal(resource, &bin); err != nil {
		return nil, "", unsupported("malformed entry resource")
	}
	if bin.ResourceType != "Binary" {
		return resource, mtFHIRJSON, nil
	}
	data, err := base64.StdEncoding.DecodeString(bin.Data)
	if err != nil {
		return nil, "", unsupported("Binary patch data is not base64")
	}
	return data, bin.ContentType, nil
}
