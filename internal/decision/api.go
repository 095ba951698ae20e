package decision

import (
	"github.com/fhirwall/fhirwall/internal/fhir"

	"errors"
	"strings"
)

// API is one of the FHIR APIs fhirwall fronts, e.g. {patient-access, /patient-access/fhir}.
type API struct {
	Name   string
	Prefix string // path prefix of the API's FHIR base, no trailing slash
	// BodyLimits are the paths below the base whose request bodies may exceed fhir.MaxBodyBytes, with their
	// own limit (config operations[].max_body_bytes).
	BodyLimits map[string]int
}

// BodyLimit is the largest request body the API accepts at path (below its base).
func (a API) BodyLimit(path string) int {
	if n, ok := a.BodyLimits[path]; ok && n > 0 {
		return n
	}
	return fhir.MaxBodyBytes
}

// ErrNoAPI means the path is under no configured API, or is not in normal form.
var ErrNoAPI = errors.New("no API at this path")

// Route finds the API a request path belongs to and returns the path below its base. The path must already
// be in normal form (Envoy's normalisation, or the standalone proxy's equivalent); a path that is not — dot
// segments, empty segments, encoded slashes or dots — is refused, never decoded and guessed at. What lies
// below the base is the FHIR classifier's to judge.
func Route(apis []API, rawPath string) (API, string, error) {
	lower := strings.ToLower(rawPath)
	if !strings.HasPrefix(rawPath, "/") || strings.Contains(rawPath, "//") || strings.Contains(lower, "%2f") ||
		strings.Contains(lower, "%2e") || strings.Contains(lower, "%5c") || hasDotSegment(rawPath) {
		return API{}, "", ErrNoAPI
	}
	for _, a := range apis {
		if rawPath == a.Prefix || strings.HasPrefix(rawPath, a.Prefix+"/") {
			return a, strings.TrimPrefix(rawPath, a.Prefix), nil
		}
	}
	return API{}, "", ErrNoAPI
}

func hasDotSegment(p string) bool {
	for _, s := range strings.Split(p, "/") {
		if s == "." || s == ".." {
			return true
		}
	}
	return false
}

// publicBase is the API's base as the client of d reached it: the face's own when it knows it
// (Input.PublicBase), else Core.PublicBase. "" means none is known.
func (c *Core) publicBase(d *Decision) string {
	if d.Input.PublicBase != "" {
		return strings.TrimSuffix(d.Input.PublicBase, "/")
	}
	if c.PublicBase == nil {
		return ""
	}
	return strings.TrimSuffix(c.PublicBase(d.Input.API), "/")
}
