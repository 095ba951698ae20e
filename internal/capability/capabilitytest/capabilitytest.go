// Package capabilitytest loads the example configuration's APIs the way cmd/proxy maps them, for the tests
// of internal/capability and the end-to-end checks under test/capability.
package capabilitytest

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/spf13/viper"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/capability"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Example maps the apis, issuers and public URLs of config/fhirwall.yaml the way cmd/proxy does. Only those
// keys are decoded (with config's own types), so work on unrelated keys cannot break the tests using it.
// standalone picks the face: proxy.public_url (the standalone proxy) instead of public_url (Envoy).
func Example(t testing.TB, standalone bool) ([]capability.API, Config) {
	t.Helper()
	v := viper.New()
	v.SetConfigFile(filepath.Join(Root(), "config", "fhirwall.yaml"))
	if err := v.ReadInConfig(); err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		t.Fatal(err)
	}
	config.InheritSandboxes(c.APIs)
	base := c.PublicURL
	if standalone {
		base = c.Proxy.PublicURL
	}
	var apis []capability.API
	for _, a := range c.APIs {
		api := capability.API{Name: a.Name, Prefix: a.Prefix, PublicBase: base + a.Prefix, SMART: capability.SMART(a.SMART),
			Interactions: a.Interactions, Guides: a.Guides}
		if api.SMART.Issuer == "" {
			api.SMART.Issuer = c.Issuers[0].URL
		}
		for _, r := range a.Resources {
			api.Resources = append(api.Resources, capability.Resource(r))
		}
		for _, o := range a.Operations {
			api.Operations = append(api.Operations, capability.Operation{Type: o.Type, Name: o.Name, Definition: o.Definition})
		}
		apis = append(apis, api)
	}
	return apis, c
}

// Config is the part of the example configuration Example reads.
type Config struct {
	PublicURL string          `mapstructure:"public_url"`
	Issuers   []config.Issuer `mapstructure:"issuers"`
	APIs      []config.API    `mapstructure:"apis"`
	Proxy     struct {
		PublicURL string `mapstructure:"public_url"`
	} `mapstructure:"proxy"`
	FHIRServer struct {
		URL string `mapstructure:"url"`
	} `mapstructure:"fhir_server"`
}
