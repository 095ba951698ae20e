package config

import (
	"fmt"
	"net/url"
	"strings"
)

// CORS is one API's cross-origin policy. The discovery documents ([base]/metadata and
// [base]/.well-known/smart-configuration) are readable from any origin whatever this says; the API's data
// only from AllowedOrigins. The list lives here, beside the API, rather than per client in the app
// registry: Envoy's CORS filter takes its origins from xDS, and fhirwall-xds builds Envoy's config from this
// file, never from the registry's database. Empty: no browser origin may read the data.
type CORS struct {
	// AllowedOrigins are origins exactly as browsers send them: scheme://host[:port], no path, no "*".
	AllowedOrigins []string `mapstructure:"allowed_origins"`
}

func (c CORS) validate(api int) []error {
	var errs []error
	for j, o := range c.AllowedOrigins {
		if !isOrigin(o) {
			errs = append(errs, fmt.Errorf("apis[%d].cors.allowed_origins[%d] %q: want scheme://host[:port] exactly as a browser sends it (no path, no trailing slash, no \"*\")", api, j, o))
		}
	}
	return errs
}

// isOrigin reports a serialised tuple origin (RFC 6454 §6.2): an http(s) scheme and host, an optional port,
// nothing else.
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	return err == nil && !strings.ContainsAny(s, "*%\\ ") && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Path == "" &&
		u.RawQuery == "" && u.Fragment == "" && u.User == nil && !u.ForceQuery && u.Opaque == "" &&
		u.String() == s
}
