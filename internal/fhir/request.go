// Package fhir classifies HTTP requests into typed FHIR R4 RESTful interactions. It is an allow-list:
// anything it does not understand is an error, and callers refuse it.
package fhir

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Interaction names follow FHIR R4 RESTful API §3.1.0 (http://hl7.org/fhir/R4/http.html).
type Interaction string

const (
	Capabilities Interaction = "capabilities"
	Read         Interaction = "read"
	VRead        Interaction = "vread"
	SearchType   Interaction = "search-type"
)

// Request is a classified FHIR request.
type Request struct {
	Interaction  Interaction
	ResourceType string
	ID           string
	VersionID    string
	Params       url.Values // query parameters, decoded; never nil
}

// ErrUnsupported is returned for every request the classifier does not understand.
var ErrUnsupported = errors.New("unsupported FHIR request")

// Classify parses method, the path below the API's FHIR base ("" or "/..."), and the raw query.
// The walking skeleton understands capabilities, read, vread and search by GET; later work adds the rest
// of the RESTful API. The path must already be normalised by the edge; dot segments, empty segments,
// encoded characters and matrix parameters are refused here again rather than trusted.
func Classify(method, path, rawQuery string) (Request, error) {
	params, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Request{}, fmt.Errorf("%w: malformed query", ErrUnsupported)
	}
	segs, err := segments(path)
	if err != nil {
		return Request{}, err
	}
	if method != "GET" {
		return Request{}, fmt.Errorf("%w: method %s", ErrUnsupported, method)
	}
	r := Request{Params: params}
	switch {
	case len(segs) == 1 && segs[0] == "metadata":
		r.Interaction = Capabilities
		return r, nil
	case len(segs) >= 1 && !IsResourceTypeName(segs[0]):
		return Request{}, fmt.Errorf("%w: %q is not a resource type", ErrUnsupported, segs[0])
	}
	switch len(segs) {
	case 1:
		r.Interaction, r.ResourceType = SearchType, segs[0]
	case 2:
		if !IsID(segs[1]) {
			return Request{}, fmt.Errorf("%w: %q is not a resource id", ErrUnsupported, segs[1])
		}
		r.Interaction, r.ResourceType, r.ID = Read, segs[0], segs[1]
	case 4:
		if segs[2] != "_history" || !IsID(segs[1]) || !IsID(segs[3]) {
			return Request{}, fmt.Errorf("%w: path", ErrUnsupported)
		}
		r.Interaction, r.ResourceType, r.ID, r.VersionID = VRead, segs[0], segs[1], segs[3]
	default:
		return Request{}, fmt.Errorf("%w: path", ErrUnsupported)
	}
	if (r.Interaction == Read || r.Interaction == VRead) && len(params) > 0 {
		// _format, _summary, _elements on reads come with later work; refuse rather than guess.
		return Request{}, fmt.Errorf("%w: parameters on a read", ErrUnsupported)
	}
	return r, nil
}

func segments(path string) ([]string, error) {
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrUnsupported)
	}
	segs := strings.Split(path, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "%;\\") {
			return nil, fmt.Errorf("%w: path segment %q", ErrUnsupported, s)
		}
	}
	return segs, nil
}

// IsResourceTypeName reports whether s has the shape of a FHIR resource type name. Whether an API serves
// that type is the policy's decision.
func IsResourceTypeName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// IsID reports whether s is a FHIR id: [A-Za-z0-9\-\.]{1,64} (R4 datatypes §id).
func IsID(s string) bool {
	if len(s) == 0 || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
