// Package capability generates each API's discovery documents from configuration — the FHIR
// CapabilityStatement ([base]/metadata) and SMART's [base]/.well-known/smart-configuration — and serves them.
package capability

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

// API is what the discovery documents of one FHIR API say.
type API struct {
	Name   string
	Prefix string // the API's base path, no trailing slash; the handler answers below it
	// PublicBase is the absolute URL apps use for this API (CapabilityStatement.implementation.url).
	PublicBase string
	// Resources are the types this API serves, in the order the CapabilityStatement lists them.
	Resources []Resource
	SMART     SMART
	// Interactions are the type-level interactions the API's policy serves on every listed type (the
	// policy's `served` set less paging, which is not a CapabilityStatement interaction); empty: read and
	// search-type.
	Interactions []string
	// Operations are listed on their type; a type that only has operations (Group for $export) is listed
	// with no interaction.
	Operations []Operation
	// Guides name entries of the guides table (guides.go): their ImplementationGuide canonicals become
	// implementationGuide, and each type's supportedProfile comes from the first guide with profiles for it.
	Guides []string
}

// Operation is one operation served on a type (R4 CapabilityStatement.rest.resource.operation).
type Operation struct {
	Type       string
	Name       string // without the $
	Definition string // the OperationDefinition's canonical URL
}

// typeInteractions are the R4 type-level interaction codes (TypeRestfulInteraction) an API may claim, in the
// spec's order. Only Prior Authorization's Subscription is written to; every other API is read-only.
var typeInteractions = []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"}

// DefaultInteractions apply when the configuration names none.
var DefaultInteractions = []string{"read", "search-type"}

// Resource is one resource type an API serves and what may be asked of it: the API's interactions, and vread
// too when VRead is set.
type Resource struct {
	Type         string
	SearchParams []string // parameter names; each must be known for Type (tables.go)
	Include      []string // CapabilityStatement.rest.resource.searchInclude, e.g. "ExplanationOfBenefit:*"
	RevInclude   []string // searchRevInclude, e.g. "Provenance:target"
	VRead        bool
	Public       bool // reference data (config apis[].resources[].public); the statement lists it like any type
	// Documentation is the statement's rest.resource.documentation (markdown): what a client must know
	// beyond the interactions, e.g. which Subscription channels are served.
	Documentation string
}

// SMART is an API's authorization story as SMART App Launch 2.x discovery tells it.
type SMART struct {
	// Issuer is the token issuer whose OIDC discovery document names the endpoints.
	Issuer string
	// AuthorizationEndpoint, TokenEndpoint and JWKSURI, when set, replace what the issuer's discovery
	// document says. With all three set (JWKSURI only needed for sso-openid-connect) the issuer is not asked.
	AuthorizationEndpoint string
	TokenEndpoint         string
	JWKSURI               string
	// ManagementEndpoint is where a user sees and revokes the apps they authorised (SMART 2.2 §Discovery,
	// RECOMMENDED); empty: not published, because no OIDC discovery field names one.
	ManagementEndpoint string
	// Capabilities are SMART 2.x capability codes. Client-authentication capabilities the issuer cannot
	// honour (no private_key_jwt, no client secrets) are left out of what is published.
	Capabilities []string
	// Scopes are published as scopes_supported as they are; ResourceScopes are templates with "{type}"
	// expanded once per configured resource type, e.g. "patient/{type}.rs".
	Scopes         []string
	ResourceScopes []string
	// GrantTypes and TokenEndpointAuthMethods are what fhirwall offers; what is published is the part the
	// issuer supports too.
	GrantTypes               []string
	TokenEndpointAuthMethods []string
}

// Defaults applied when the configuration leaves a list empty.
var (
	DefaultGrantTypes               = []string{"authorization_code", "client_credentials"}
	DefaultTokenEndpointAuthMethods = []string{"private_key_jwt", "client_secret_basic"}
)

// smartCapabilities are the capability codes SMART App Launch 2.2 §Capabilities defines.
var smartCapabilities = []string{
	"launch-ehr", "launch-standalone", "authorize-post", "client-public", "client-confidential-symmetric",
	"client-confidential-asymmetric", "sso-openid-connect", "context-passthrough-banner",
	"context-passthrough-style", "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
	"context-standalone-encounter", "permission-offline", "permission-online", "permission-patient",
	"permission-user", "permission-v1", "permission-v2", "smart-app-state",
}

var (
	// ErrInvalid is wrapped by every configuration problem New reports.
	ErrInvalid = errors.New("invalid capability configuration")
	// ErrDiscovery is wrapped when the issuer's endpoints cannot be known; the documents are then not served.
	ErrDiscovery = errors.New("issuer discovery failed")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate reports every problem at once.
func (a *API) Validate() error {
	var errs []error
	if a.Name == "" {
		errs = append(errs, invalid("api without a name"))
	}
	if !strings.HasPrefix(a.Prefix, "/") || strings.HasSuffix(a.Prefix, "/") {
		errs = append(errs, invalid("api %q: prefix %q must start with / and not end with one", a.Name, a.Prefix))
	}
	if u, err := url.Parse(a.PublicBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(a.PublicBase, "/") {
		errs = append(errs, invalid("api %q: public base %q must be an absolute http(s) URL without trailing slash", a.Name, a.PublicBase))
	}
	if len(a.Resources) == 0 {
		errs = append(errs, invalid("api %q serves no resource types", a.Name))
	}
	seen := map[string]bool{}
	for _, r := range a.Resources {
		if !fhir.IsResourceType(r.Type) {
			errs = append(errs, invalid("api %q: %q is not an R4 resource type", a.Name, r.Type))
			continue
		}
		if seen[r.Type] {
			errs = append(errs, invalid("api %q: resource %s listed twice", a.Name, r.Type))
		}
		seen[r.Type] = true
		for _, p := range r.SearchParams {
			if strings.HasPrefix(p, "_include") || strings.HasPrefix(p, "_revinclude") {
				errs = append(errs, invalid("api %q: %s: %s is not a search parameter; list the paths under include/revinclude", a.Name, r.Type, p))
			} else if _, ok := lookupSearchParam(r.Type, p); !ok {
				errs = append(errs, invalid("api %q: %s: unknown search parameter %q (not in US Core 6.1.0, CARIN BB 2.0.0 or the R4 common parameters)", a.Name, r.Type, p))
			}
		}
		if dup := duplicate(r.SearchParams); dup != "" {
			errs = append(errs, invalid("api %q: %s: search parameter %q listed twice", a.Name, r.Type, dup))
		}
		for _, inc := range r.Include {
			// R4 §3.1.1.5.5: _include=[source type]:[search parameter](:[target type]), or [type]:* .
			if parts := strings.Split(inc, ":"); parts[0] != r.Type || len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
				errs = append(errs, invalid("api %q: %s: include %q must be %s:<parameter>[:<type>]", a.Name, r.Type, inc, r.Type))
			}
		}
		for _, inc := range r.RevInclude {
			if parts := strings.Split(inc, ":"); !fhir.IsResourceType(parts[0]) || len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
				errs = append(errs, invalid("api %q: %s: revinclude %q must be <type>:<parameter>[:<type>]", a.Name, r.Type, inc))
			}
		}
	}
	for _, i := range a.Interactions {
		if !slices.Contains(typeInteractions, i) {
			errs = append(errs, invalid("api %q: interaction %q: want one of %v", a.Name, i, typeInteractions))
		}
	}
	for _, o := range a.Operations {
		if !fhir.IsResourceType(o.Type) || o.Name == "" || strings.HasPrefix(o.Name, "$") {
			errs = append(errs, invalid("api %q: operation %q on %q: want an R4 type and a name without $", a.Name, o.Name, o.Type))
		}
		if u, err := url.Parse(o.Definition); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, invalid("api %q: operation %s: definition %q must be the OperationDefinition's canonical URL", a.Name, o.Name, o.Definition))
		}
	}
	for _, g := range a.Guides {
		if _, ok := guides[g]; !ok {
			errs = append(errs, invalid("api %q: guide %q is not one of %v", a.Name, g, guideNames()))
		}
	}
	s := a.SMART
	if u, err := url.Parse(s.Issuer); err != nil || u.Scheme == "" || u.Host == "" {
		errs = append(errs, invalid("api %q: smart issuer %q must be an absolute URL", a.Name, s.Issuer))
	}
	for name, v := range map[string]string{"authorization_endpoint": s.AuthorizationEndpoint, "token_endpoint": s.TokenEndpoint,
		"jwks_uri": s.JWKSURI, "management_endpoint": s.ManagementEndpoint} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, invalid("api %q: smart %s %q must be an absolute http(s) URL", a.Name, name, v))
		}
	}
	if len(s.Capabilities) == 0 {
		errs = append(errs, invalid("api %q: smart capabilities: at least one is required", a.Name))
	}
	for _, c := range s.Capabilities {
		if !slices.Contains(smartCapabilities, c) {
			errs = append(errs, invalid("api %q: smart capability %q is not defined by SMART App Launch 2.x", a.Name, c))
		}
	}
	for _, g := range s.GrantTypes {
		if !slices.Contains(DefaultGrantTypes, g) {
			// SMART 2.x knows only these two; implicit and password grants have no place in front of PHI.
			errs = append(errs, invalid("api %q: smart grant type %q: want one of %v", a.Name, g, DefaultGrantTypes))
		}
	}
	for _, m := range s.TokenEndpointAuthMethods {
		if !slices.Contains([]string{"private_key_jwt", "client_secret_basic", "client_secret_post", "none"}, m) {
			errs = append(errs, invalid("api %q: token endpoint auth method %q", a.Name, m))
		}
	}
	for _, t := range s.ResourceScopes {
		if !strings.Contains(t, "{type}") {
			errs = append(errs, invalid("api %q: resource scope %q has no {type}", a.Name, t))
		}
	}
	return errors.Join(errs...)
}

func lookupSearchParam(resourceType, name string) (searchParam, bool) {
	if p, ok := knownSearchParams[resourceType][name]; ok {
		return p, true
	}
	p, ok := commonSearchParams[name]
	return p, ok
}

func duplicate(list []string) string {
	seen := map[string]bool{}
	for _, s := range list {
		if seen[s] {
			return s
		}
		seen[s] = true
	}
	return ""
}

// needsDiscovery reports whether the issuer must be asked: some endpoint the documents publish is not
// configured.
func (s *SMART) needsDiscovery() bool {
	return s.AuthorizationEndpoint == "" || s.TokenEndpoint == "" ||
		(s.JWKSURI == "" && slices.Contains(s.Capabilities, "sso-openid-connect"))
}
