// Package fhir classifies HTTP requests into typed FHIR R4 RESTful interactions. It is an allow-list:
// anything it does not understand is an error, and callers refuse it.
package fhir

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Interaction names follow FHIR R4 RESTful API §3.1.0 (http://hl7.org/fhir/R4/http.html), plus the SMART
// discovery document and HAPI FHIR's paging links.
type Interaction string

const (
	Read               Interaction = "read"
	VRead              Interaction = "vread"
	Update             Interaction = "update"
	Patch              Interaction = "patch"
	Delete             Interaction = "delete"
	HistoryInstance    Interaction = "history-instance"
	HistoryType        Interaction = "history-type"
	HistorySystem      Interaction = "history-system"
	Create             Interaction = "create"
	SearchType         Interaction = "search-type"
	SearchSystem       Interaction = "search-system"
	SearchCompartment  Interaction = "search-compartment"
	Capabilities       Interaction = "capabilities"
	SmartConfiguration Interaction = "smart-configuration"
	Batch              Interaction = "batch"
	Transaction        Interaction = "transaction"
	Operation          Interaction = "operation"
	Paging             Interaction = "paging"
)

// Operation levels, R4 §3.1.0.13 (operations framework).
const (
	LevelSystem   = "system"
	LevelType     = "type"
	LevelInstance = "instance"
)

// Request is a classified FHIR request.
type Request struct {
	Method       string
	Interaction  Interaction
	ResourceType string // "*" for a compartment search across all types
	ID           string
	VersionID    string
	// Conditional is set for conditional create (If-None-Exist), update, patch and delete; Params then hold
	// the criteria.
	Conditional bool
	Operation   *OperationName // operations only
	Compartment *Compartment   // compartment searches only
	// Params holds every parameter, one entry per occurrence, from the query, a _search form body and an
	// If-None-Exist header, in that order. Never nil.
	Params []Param
	// Query is the URL's own query string, decoded; the decision core rebuilds the upstream query from it.
	// Never nil.
	Query url.Values
	// Prefer holds the Prefer header's preferences (R4 §3.1.0.1.7, Bulk Data kick-off).
	Prefer  []string
	Body    *Body      // the resource sent with create, update, batch/transaction and operations
	Patch   *PatchBody // patch only
	Entries []Request  // batch/transaction only: each entry classified as its own request
}

// OperationName is an extended operation ($name) and the level it was invoked at.
type OperationName struct {
	Name  string // without the "$"
	Level string
}

// Compartment names the compartment a compartment search is limited to (R4 §3.1.0.9.2).
type Compartment struct {
	Type string
	ID   string
}

// Errors. Every error Classify returns wraps exactly one of these; callers map them to 400, 415 and 413.
var (
	ErrUnsupported          = errors.New("unsupported FHIR request")
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	ErrTooLarge             = errors.New("request too large")
)

// MaxBodyBytes bounds a request body; a larger body is refused whole, never checked in part.
const MaxBodyBytes = 1 << 20

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// Classify parses one request: method, the path below the API's FHIR base ("" or "/..."), the raw query, the
// request headers (header returns every value of the named header; nil means none) and the body.
// The path must already be normalised by the edge; dot segments, empty segments, encoded characters and
// matrix parameters are refused here again rather than trusted.
func Classify(method, path, rawQuery string, header func(string) []string, body []byte) (Request, error) {
	return ClassifyWithin(method, path, rawQuery, header, body, MaxBodyBytes)
}

// ClassifyWithin is Classify for a request whose body may be up to limit bytes (an operation configured with
// a larger body, such as Payer-to-Payer's $bulk-member-match).
func ClassifyWithin(method, path, rawQuery string, header func(string) []string, body []byte, limit int) (Request, error) {
	if header == nil {
		header = func(string) []string { return nil }
	}
	if len(body) > limit {
		return Request{}, fmt.Errorf("%w: body of %d bytes", ErrTooLarge, len(body))
	}
	// A method override would make the FHIR server act on another method than the one decided here.
	for _, name := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		if len(header(name)) > 0 {
			return Request{}, unsupported("%s header", name)
		}
	}
	segs, err := segments(path)
	if err != nil {
		return Request{}, err
	}
	h, err := readHeaders(header)
	if err != nil {
		return Request{}, err
	}
	return classify(method, segs, rawQuery, h, body, 0)
}

// headers are the request headers classification reads.
type headers struct {
	contentType string // "" when absent
	ifNoneExist *string
	prefer      []string
}

func readHeaders(header func(string) []string) (headers, error) {
	var h headers
	ct := header("Content-Type")
	if len(ct) > 1 {
		return h, unsupported("more than one Content-Type")
	}
	if len(ct) == 1 {
		h.contentType = ct[0]
	}
	if v := header("If-None-Exist"); len(v) > 1 {
		return h, unsupported("more than one If-None-Exist")
	} else if len(v) == 1 {
		h.ifNoneExist = &v[0]
	}
	p, err := parsePrefer(header("Prefer"))
	h.prefer = p
	return h, err
}

// parsePrefer accepts the preferences R4 and Bulk Data define (R4 §3.1.0.1.7: return, handling;
// Bulk Data kick-off: respond-async) and refuses any other.
func parsePrefer(values []string) ([]string, error) {
	out := []string{}
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			switch p {
			case "respond-async", "return=minimal", "return=representation", "return=OperationOutcome",
				"handling=strict", "handling=lenient":
				out = append(out, p)
			default:
				return nil, unsupported("Prefer %q", p)
			}
		}
	}
	return out, nil
}

// segments splits a path below the base; the base itself ("" or "/") has no segments.
func segments(path string) ([]string, error) {
	if path == "" || path == "/" {
		return nil, nil
	}
	if path[0] != '/' {
		return nil, unsupported("path %q is not below the base", path)
	}
	segs := strings.Split(path[1:], "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "%;\\?#") {
			return nil, unsupported("path segment %q", s)
		}
	}
	return segs, nil
}

// IsResourceType reports whether s names a concrete FHIR R4 resource type.
func IsResourceType(s string) bool { return resourceTypes[s] }

// IsResourceTypeName reports whether s has the shape of a FHIR resource type name; IsResourceType says
// whether R4 defines it.
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

// IsID reports whether s is a FHIR id: [A-Za-z0-9\-\.]{1,64} (R4 datatypes §2.24.0.1 id).
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

// isOperationName reports whether s is "$" and an operation code (R4 OperationDefinition.code is a token).
func isOperationName(s string) bool {
	if len(s) < 2 || len(s) > 65 || s[0] != '$' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
