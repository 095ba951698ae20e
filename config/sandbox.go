package config

import (
	"fmt"
	"strings"
)

// SandboxSuffix ends the name of every sandbox API: "<base>-sandbox" is the sandbox of the API "<base>". The
// decision core keys the synthetic-data rule on it (internal/decision sandbox.go), so an API named so is
// held to synthetic data whatever its sandbox_of says; Validate makes the two agree.
const SandboxSuffix = "-sandbox"

func (c *Config) inheritSandboxes() { InheritSandboxes(c.APIs) }

// InheritSandboxes gives each sandbox API in apis what it leaves unset of its base API: the same resources,
// policy inputs, discovery and limits, so a sandbox app meets the API it will later use in production. A base
// that is missing or itself a sandbox is left to Validate. Load does this; a reader of apis: alone (tests
// decoding only part of the file) calls it itself.
func InheritSandboxes(apis []API) {
	bases := map[string]API{}
	for _, a := range apis {
		bases[a.Name] = a
	}
	for i := range apis {
		a := &apis[i]
		b, ok := bases[a.SandboxOf]
		if a.SandboxOf == "" || !ok || b.SandboxOf != "" {
			continue
		}
		if a.Resources == nil {
			a.Resources = b.Resources
		}
		if a.Interactions == nil {
			a.Interactions = b.Interactions
		}
		if a.Operations == nil {
			a.Operations = b.Operations
		}
		if a.Guides == nil {
			a.Guides = b.Guides
		}
		if a.RateLimits == nil {
			a.RateLimits = b.RateLimits
		}
		if a.CORS.AllowedOrigins == nil {
			a.CORS = b.CORS
		}
		if isZeroSMART(a.SMART) {
			a.SMART = b.SMART
		}
	}
}

func isZeroSMART(s SMART) bool {
	return s.Issuer == "" && s.AuthorizationEndpoint == "" && s.TokenEndpoint == "" && s.JWKSURI == "" &&
		s.ManagementEndpoint == "" && s.Capabilities == nil && s.Scopes == nil && s.ResourceScopes == nil &&
		s.GrantTypes == nil && s.TokenEndpointAuthMethods == nil
}

// validateSandboxes: a sandbox names an API that is configured and is no sandbox itself, and is named after
// it; an API named like a sandbox is one.
func (c *Config) validateSandboxes() []error {
	apis := map[string]API{}
	for _, a := range c.APIs {
		apis[a.Name] = a
	}
	var errs []error
	for i, a := range c.APIs {
		if a.SandboxOf == "" {
			if strings.HasSuffix(a.Name, SandboxSuffix) {
				errs = append(errs, fmt.Errorf("apis[%d] %q: a sandbox API needs sandbox_of (the API whose policy decides it)", i, a.Name))
			}
			continue
		}
		base, ok := apis[a.SandboxOf]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("apis[%d].sandbox_of %q: not one of apis[].name", i, a.SandboxOf))
		case base.SandboxOf != "":
			errs = append(errs, fmt.Errorf("apis[%d].sandbox_of %q: is itself a sandbox", i, a.SandboxOf))
		}
		if a.Name != a.SandboxOf+SandboxSuffix {
			errs = append(errs, fmt.Errorf("apis[%d].name %q: the sandbox of %q must be named %q", i, a.Name, a.SandboxOf, a.SandboxOf+SandboxSuffix))
		}
	}
	return errs
}

// Sandbox is the sandbox API of the API named base, if one is configured.
func (c *Config) Sandbox(base string) (API, bool) {
	for _, a := range c.APIs {
		if a.SandboxOf == base && base != "" {
			return a, true
		}
	}
	return API{}, false
}
