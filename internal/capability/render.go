package capability

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// effective merges the issuer's discovery document (nil when it was not needed) with the configured
// overrides into the endpoints the documents publish.
func effective(s SMART, discovered *Endpoints) Endpoints {
	var ep Endpoints
	if discovered != nil {
		ep = *discovered
	} else {
		// Nothing asked, nothing to intersect with: publish the configuration as it stands.
		ep.GrantTypesSupported = orDefault(s.GrantTypes, DefaultGrantTypes)
		ep.TokenEndpointAuthMethodsSupported = orDefault(s.TokenEndpointAuthMethods, DefaultTokenEndpointAuthMethods)
	}
	ep.Issuer = s.Issuer
	for _, o := range []struct {
		dst *string
		v   string
	}{
		{&ep.AuthorizationEndpoint, s.AuthorizationEndpoint}, {&ep.TokenEndpoint, s.TokenEndpoint}, {&ep.JWKSURI, s.JWKSURI},
	} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	return ep
}

// smartConfiguration is the SMART App Launch 2.2 §Discovery document (.well-known/smart-configuration).
type smartConfiguration struct {
	Issuer                            string   `json:"issuer,omitempty"`
	JWKSURI                           string   `json:"jwks_uri,omitempty"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint,omitempty"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint,omitempty"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	ManagementEndpoint                string   `json:"management_endpoint,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	Capabilities                      []string `json:"capabilities"`
}

// renderSMART builds .well-known/smart-configuration for one API; registration is the RFC 7591 endpoint
// apps may register at (empty: none is published).
func renderSMART(a *API, ep Endpoints, registration string) ([]byte, error) {
	s := a.SMART
	// OIDC Discovery §3: an issuer that does not list its grant types supports authorization_code (and
	// implicit, which fhirwall never offers); one that does not list auth methods supports client_secret_basic.
	grants := intersect(orDefault(s.GrantTypes, DefaultGrantTypes), orDefault(ep.GrantTypesSupported, []string{"authorization_code"}))
	methods := intersect(orDefault(s.TokenEndpointAuthMethods, DefaultTokenEndpointAuthMethods),
		orDefault(ep.TokenEndpointAuthMethodsSupported, []string{"client_secret_basic"}))
	if !slices.Contains(grants, "authorization_code") {
		// SMART 2.2 §Discovery: grant_types_supported SHALL include authorization_code.
		return nil, fmt.Errorf("%w: issuer %s does not support the authorization_code grant", ErrDiscovery, s.Issuer)
	}
	if len(ep.CodeChallengeMethodsSupported) > 0 && !slices.Contains(ep.CodeChallengeMethodsSupported, "S256") {
		// SMART 2.2 §Discovery: code_challenge_methods_supported SHALL include S256; fhirwall cannot promise
		// PKCE the issuer does not do.
		return nil, fmt.Errorf("%w: issuer %s does not support PKCE S256", ErrDiscovery, s.Issuer)
	}
	// SMART 2.2 §Capabilities: client-confidential-asymmetric is private_key_jwt, client-confidential-symmetric
	// is a client secret (basic or post). Each is published only with its methods and its methods only with
	// it, so an app never reads a method the capabilities deny or a capability the issuer cannot honour.
	symmetric := func(m string) bool { return m == "client_secret_basic" || m == "client_secret_post" }
	methods = slices.DeleteFunc(methods, func(m string) bool {
		return (m == "private_key_jwt" && !slices.Contains(s.Capabilities, "client-confidential-asymmetric")) ||
			(symmetric(m) && !slices.Contains(s.Capabilities, "client-confidential-symmetric"))
	})
	var caps []string
	for _, c := range s.Capabilities {
		switch {
		case c == "client-confidential-asymmetric" && !slices.Contains(methods, "private_key_jwt"),
			c == "client-confidential-symmetric" && !slices.ContainsFunc(methods, symmetric):
			continue // the issuer cannot authenticate such clients: do not claim it
		}
		caps = append(caps, c)
	}
	doc := smartConfiguration{
		AuthorizationEndpoint: ep.AuthorizationEndpoint,
		TokenEndpoint:         ep.TokenEndpoint,
		RevocationEndpoint:    ep.RevocationEndpoint,
		IntrospectionEndpoint: ep.IntrospectionEndpoint,
		RegistrationEndpoint:  registration,
		// Keycloak's discovery document names no such page (the account console's is not one an app can be
		// sent to for this realm's clients), so it is published only when configured.
		ManagementEndpoint:                s.ManagementEndpoint,
		GrantTypesSupported:               grants,
		TokenEndpointAuthMethodsSupported: methods,
		ScopesSupported:                   scopes(a),
		ResponseTypesSupported:            []string{"code"},
		// Never "plain" (SMART 2.2 §Discovery).
		CodeChallengeMethodsSupported: []string{"S256"},
		Capabilities:                  caps,
	}
	if slices.Contains(caps, "sso-openid-connect") {
		// SMART 2.2 §Discovery: issuer and jwks_uri are required when sso-openid-connect is claimed.
		doc.Issuer, doc.JWKSURI = ep.Issuer, ep.JWKSURI
	}
	return json.MarshalIndent(doc, "", "  ")
}

func scopes(a *API) []string {
	out := slices.Clone(a.SMART.Scopes)
	for _, t := range a.SMART.ResourceScopes {
		for _, r := range a.Resources {
			out = append(out, strings.ReplaceAll(t, "{type}", r.Type))
		}
	}
	return compact(out)
}

// The CapabilityStatement, with only the elements fhirwall fills (R4 §CapabilityStatement).
type (
	capabilityStatement struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Name         string `json:"name"`
		Title        string `json:"title"`
		Status       string `json:"status"`
		Date         string `json:"date"`
		Publisher    string `json:"publisher"`
		Description  string `json:"description"`
		Kind         string `json:"kind"`
		// No instantiates: it claims every SHALL of another CapabilityStatement, and none of the guides'
		// server statements is met whole (CARIN BB's c4bb SHALLs EOB searches by type and service-date, which
		// the FHIR server behind does not support; us-core-server SHALLs types no API here serves).
		Software            software       `json:"software"`
		Implementation      implementation `json:"implementation"`
		FHIRVersion         string         `json:"fhirVersion"`
		Format              []string       `json:"format"`
		ImplementationGuide []string       `json:"implementationGuide,omitempty"`
		Rest                []rest         `json:"rest"`
	}
	software struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
	}
	implementation struct {
		Description string `json:"description"`
		URL         string `json:"url"`
	}
	rest struct {
		Mode     string         `json:"mode"`
		Security security       `json:"security"`
		Resource []restResource `json:"resource"`
	}
	security struct {
		Extension   []extension       `json:"extension"`
		Service     []codeableConcept `json:"service"`
		Description string            `json:"description"`
	}
	extension struct {
		URL       string      `json:"url"`
		Extension []extension `json:"extension,omitempty"`
		ValueURI  string      `json:"valueUri,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding"`
		Text   string   `json:"text,omitempty"`
	}
	coding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	restResource struct {
		Type             string          `json:"type"`
		SupportedProfile []string        `json:"supportedProfile,omitempty"`
		Interaction      []interaction   `json:"interaction,omitempty"`
		Versioning       string          `json:"versioning,omitempty"`
		ReadHistory      *bool           `json:"readHistory,omitempty"`
		SearchInclude    []string        `json:"searchInclude,omitempty"`
		SearchRevInclude []string        `json:"searchRevInclude,omitempty"`
		SearchParam      []restSearchPar `json:"searchParam,omitempty"`
		Operation        []operation     `json:"operation,omitempty"`
		Documentation    string          `json:"documentation,omitempty"`
	}
	operation struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
	}
	interaction struct {
		Code string `json:"code"`
	}
	restSearchPar struct {
		Name       string `json:"name"`
		Definition string `json:"definition,omitempty"`
		Type       string `json:"type"`
	}
)

// oauthURIsExtension is SMART's CapabilityStatement extension naming the OAuth endpoints (SMART App Launch
// 2.2 §Discovery, "conformance statement").
const oauthURIsExtension = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

// renderCapabilityStatement builds [base]/metadata for one API: only the interactions, types and search
// parameters the API allows, never what the FHIR server behind it could do.
func renderCapabilityStatement(a *API, ep Endpoints, registration, date, version string) ([]byte, error) {
	oauth := []extension{{URL: "authorize", ValueURI: ep.AuthorizationEndpoint}, {URL: "token", ValueURI: ep.TokenEndpoint}}
	if registration != "" {
		oauth = append(oauth, extension{URL: "register", ValueURI: registration})
	}
	if ep.RevocationEndpoint != "" {
		oauth = append(oauth, extension{URL: "revoke", ValueURI: ep.RevocationEndpoint})
	}
	cs := capabilityStatement{
		ResourceType: "CapabilityStatement",
		ID:           "fhirwall-" + a.Name,
		Name:         "Fhirwall" + pascal(a.Name),
		Title:        "fhirwall " + a.Name + " API",
		Status:       "active",
		Date:         date,
		Publisher:    "fhirwall",
		Description:  "What the " + a.Name + " API served through fhirwall allows; generated from fhirwall's configuration.",
		Kind:         "instance",
		Software:     software{Name: "fhirwall", Version: version},
		Implementation: implementation{
			Description: "fhirwall " + a.Name + " API",
			URL:         a.PublicBase,
		},
		FHIRVersion: "4.0.1",
		Format:      []string{"json"},
		Rest: []rest{{
			Mode: "server",
			Security: security{
				Extension: []extension{{URL: oauthURIsExtension, Extension: oauth}},
				Service: []codeableConcept{{
					Coding: []coding{{System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR", Display: "SMART-on-FHIR"}},
					Text:   "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
				}},
				Description: "SMART App Launch 2.x; discovery at " + a.PublicBase + "/.well-known/smart-configuration",
			},
		}},
	}
	for _, g := range a.Guides {
		cs.ImplementationGuide = append(cs.ImplementationGuide, guides[g].ImplementationGuide)
	}
	cs.ImplementationGuide = compact(cs.ImplementationGuide)
	served := orDefault(a.Interactions, DefaultInteractions)
	listed := map[string]int{}
	for _, r := range a.Resources {
		rr := restResource{
			Type:             r.Type,
			SupportedProfile: profiles(a.Guides, r.Type),
			SearchInclude:    r.Include,
			SearchRevInclude: r.RevInclude,
			Documentation:    r.Documentation,
		}
		for _, code := range typeInteractions { // the spec's order, whatever the configuration's
			if slices.Contains(served, code) || (code == "vread" && r.VRead) {
				rr.Interaction = append(rr.Interaction, interaction{Code: code})
			}
		}
		if slices.Contains(served, "vread") || r.VRead {
			// R4: readHistory says vread serves past versions too, as the policy's vread does (each one held
			// to the compartment like the current one).
			rr.Versioning, rr.ReadHistory = "versioned", ptr(true)
		}
		for _, name := range r.SearchParams {
			p, ok := lookupSearchParam(r.Type, name)
			if !ok { // Validate refused this already
				return nil, invalid("%s: unknown search parameter %q", r.Type, name)
			}
			rr.SearchParam = append(rr.SearchParam, restSearchPar{Name: name, Definition: p.Definition, Type: p.Type})
		}
		listed[r.Type] = len(cs.Rest[0].Resource)
		cs.Rest[0].Resource = append(cs.Rest[0].Resource, rr)
	}
	for _, o := range a.Operations {
		i, ok := listed[o.Type]
		if !ok {
			// A type served only through an operation (Provider Access's Group, for $export): listed with no
			// interaction, because the policy serves no read or search of it.
			i, listed[o.Type] = len(cs.Rest[0].Resource), len(cs.Rest[0].Resource)
			cs.Rest[0].Resource = append(cs.Rest[0].Resource, restResource{Type: o.Type, SupportedProfile: profiles(a.Guides, o.Type)})
		}
		cs.Rest[0].Resource[i].Operation = append(cs.Rest[0].Resource[i].Operation, operation{Name: o.Name, Definition: o.Definition})
	}
	return json.MarshalIndent(cs, "", "  ")
}

func ptr[T any](v T) *T { return &v }

func pascal(s string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func orDefault(list, def []string) []string {
	if len(list) == 0 {
		return def
	}
	return list
}

// intersect keeps want's order.
func intersect(want, have []string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// compact drops repeats, keeping the first of each.
func compact(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
