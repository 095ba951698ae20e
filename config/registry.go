package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// Where the gateway reads its client registry (registry.source).
const (
	// RegistryFile is registry.file, the embedded default for a one-machine demo.
	RegistryFile = "file"
	// RegistryPostgres is the app registry in PostgreSQL (jobs.postgres_dsn), managed through the admin API
	// (/admin/apps/ on proxy.admin) and `fhirwall apps`; every replica sees a change within a second.
	RegistryPostgres = "postgres"
)

// Admin is what the admin APIs on proxy.admin share.
type Admin struct {
	// TokenFile holds the bearer token of the admin APIs on proxy.admin (the app registry's /admin/apps/,
	// and the prior-auth review API unless prior_auth.admin_token_file names its own); empty: those APIs are
	// off. Relative to the configuration file.
	TokenFile string `mapstructure:"token_file"`
}

func registryDefaults(v *viper.Viper) {
	v.SetDefault("registry.source", RegistryFile)
	v.SetDefault("admin.token_file", "")
	keycloakSyncDefaults(v)
}

func (c *Config) validateRegistry() []error {
	var errs []error
	switch c.Registry.Source {
	case RegistryFile:
		if c.Registry.File == "" {
			errs = append(errs, errors.New("registry.file: required with registry.source file; only registered clients are served"))
		}
	case RegistryPostgres:
		if c.Jobs.PostgresDSN == "" && c.role != ForXDS {
			errs = append(errs, errors.New("registry.source postgres: set jobs.postgres_dsn, the PostgreSQL that holds the app registry"))
		}
	default:
		errs = append(errs, fmt.Errorf("registry.source %q: want file (registry.file) or postgres (the app registry in jobs.postgres_dsn)", c.Registry.Source))
	}
	errs = append(errs, c.validateKeycloakSync()...)
	if c.Admin.TokenFile != "" && c.Proxy.Admin == "" {
		errs = append(errs, errors.New("admin.token_file: the admin APIs are served on proxy.admin, which is off; set proxy.admin or leave admin.token_file empty"))
	}
	return errs
}

// PriorAuthAdminTokenFile is the token file of the prior-auth review API: prior_auth.admin_token_file, else
// the shared admin.token_file; empty: that API is off.
func (c *Config) PriorAuthAdminTokenFile() string {
	if c.PriorAuth.AdminTokenFile != "" {
		return c.PriorAuth.AdminTokenFile
	}
	return c.Admin.TokenFile
}

// OfferedScopes is, per API name, the scopes that API offers apps: its smart.scopes and its
// smart.resource_scopes expanded for each of its resource types. A registration may request no other.
func (c *Config) OfferedScopes() map[string][]string {
	out := map[string][]string{}
	for _, a := range c.APIs {
		scopes := append([]string{}, a.SMART.Scopes...)
		for _, t := range a.SMART.ResourceScopes {
			for _, r := range a.Resources {
				scopes = append(scopes, strings.ReplaceAll(t, "{type}", r.Type))
			}
		}
		out[a.Name] = scopes
	}
	return out
}

func keycloakSyncDefaults(v *viper.Viper) {
	v.SetDefault("registry.import", "")
	v.SetDefault("registry.keycloak.url", "")
	v.SetDefault("registry.keycloak.realm", "")
	v.SetDefault("registry.keycloak.client_id", "")
	v.SetDefault("registry.keycloak.client_secret_file", "")
	v.SetDefault("registry.keycloak.reconcile_interval", "30s")
	v.SetDefault("registry.keycloak.protected_clients", []string{})
}

// validateKeycloakSync checks registry.import and registry.keycloak, which only the PostgreSQL registry uses.
func (c *Config) validateKeycloakSync() []error {
	var errs []error
	k := c.Registry.Keycloak
	if c.Registry.Source != RegistryPostgres {
		if c.Registry.Import != "" {
			errs = append(errs, errors.New("registry.import: only with registry.source postgres (the file registry is read in place)"))
		}
		if k.URL != "" {
			errs = append(errs, errors.New("registry.keycloak: only with registry.source postgres (the file registry's clients are the realm file's)"))
		}
		return errs
	}
	if k.URL == "" {
		return nil
	}
	if !strings.HasPrefix(k.URL, "http://") && !strings.HasPrefix(k.URL, "https://") {
		errs = append(errs, fmt.Errorf("registry.keycloak.url %q: want Keycloak's base URL, e.g. http://127.0.0.1:8180", k.URL))
	}
	if k.Realm == "" {
		errs = append(errs, errors.New("registry.keycloak.realm: required, the realm whose clients the registry owns"))
	}
	if k.ClientID == "" || k.ClientSecretFile == "" {
		errs = append(errs, errors.New("registry.keycloak.client_id and client_secret_file: required, the service account the registry signs in to Keycloak's admin API with"))
	}
	if k.ReconcileInterval < time.Second {
		errs = append(errs, fmt.Errorf("registry.keycloak.reconcile_interval %s: want at least 1s", k.ReconcileInterval))
	}
	return errs
}
