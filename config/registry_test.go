package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fhirwall.yaml")
	// proxy.grpc is on by default, and with it proxy.decision_keys_file is required.
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "decision.keys")
	if err := os.WriteFile(p, []byte("issuers: [{url: http://idp, audience: a}]\napis:\n  - {name: patient-access, prefix: /pa}\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegistrySourceIsTheFileByDefault(t *testing.T) {
	c, err := Load(writeConfig(t, "registry: {file: clients.yaml}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry.Source != RegistryFile || c.Admin.TokenFile != "" {
		t.Fatalf("registry.source %q admin.token_file %q; want file and none", c.Registry.Source, c.Admin.TokenFile)
	}
	// The example config is the stack's: its apps live in PostgreSQL, imported from clients.yaml at start-up.
	ex, err := Load("fhirwall.yaml")
	if err != nil || ex.Registry.Source != RegistryPostgres || filepath.Base(ex.Registry.Import) != "clients.yaml" {
		t.Fatalf("the example config: %v, source %q import %q; want the PostgreSQL registry importing clients.yaml", err, ex.Registry.Source, ex.Registry.Import)
	}
}

func TestPostgresRegistryNeedsTheDSNAndNoFile(t *testing.T) {
	if _, err := Load(writeConfig(t, "registry: {source: postgres}\n")); err == nil || !strings.Contains(err.Error(), "jobs.postgres_dsn") {
		t.Fatalf("postgres without a DSN: %v, want refused naming jobs.postgres_dsn", err)
	}
	c, err := Load(writeConfig(t, "registry: {source: postgres}\njobs: {postgres_dsn: 'postgres://db/x'}\nadmin: {token_file: admin.token}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry.Source != RegistryPostgres || !filepath.IsAbs(c.Admin.TokenFile) || filepath.Base(c.Admin.TokenFile) != "admin.token" {
		t.Fatalf("source %q token file %q; want postgres and the token file beside the config", c.Registry.Source, c.Admin.TokenFile)
	}
}

func TestBadRegistrySourceAndAdminWithoutListenerAreRefused(t *testing.T) {
	_, err := Load(writeConfig(t, "registry: {source: ldap, file: clients.yaml}\n"))
	if err == nil || !strings.Contains(err.Error(), `registry.source "ldap"`) {
		t.Fatalf("registry.source ldap: %v", err)
	}
	_, err = Load(writeConfig(t, "registry: {file: clients.yaml}\nadmin: {token_file: t}\nproxy: {admin: ''}\n"))
	if err == nil || !strings.Contains(err.Error(), "proxy.admin") {
		t.Fatalf("admin.token_file without proxy.admin: %v", err)
	}
	if _, err := Load(writeConfig(t, "registry: {source: file}\n")); err == nil || !strings.Contains(err.Error(), "registry.file") {
		t.Fatalf("file source without a file: %v", err)
	}
}

func TestAdminTokenFileEnvironmentVariableApplies(t *testing.T) {
	t.Setenv("FHIRWALL_ADMIN_TOKEN_FILE", "/run/fhirwall/admin.token")
	t.Setenv("FHIRWALL_REGISTRY_SOURCE", "postgres")
	c, err := Load(writeConfig(t, "registry: {file: clients.yaml}\njobs: {postgres_dsn: 'postgres://db/x'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.TokenFile != "/run/fhirwall/admin.token" || c.Registry.Source != RegistryPostgres {
		t.Fatalf("admin.token_file %q registry.source %q from the environment", c.Admin.TokenFile, c.Registry.Source)
	}
}

func TestPriorAuthAdminTokenFallsBackToTheSharedAdminToken(t *testing.T) {
	c := Config{Admin: Admin{TokenFile: "/a"}}
	if got := c.PriorAuthAdminTokenFile(); got != "/a" {
		t.Errorf("without its own: %q, want the shared /a", got)
	}
	c.PriorAuth.AdminTokenFile = "/pa"
	if got := c.PriorAuthAdminTokenFile(); got != "/pa" {
		t.Errorf("with its own: %q, want /pa", got)
	}
}

func TestOfferedScopesAreSmartScopesAndResourceScopesPerType(t *testing.T) {
	c := Config{APIs: []API{{Name: "patient-access", Resources: []Resource{{Type: "Patient"}, {Type: "Coverage"}},
		SMART: SMART{Scopes: []string{"openid", "patient/*.rs"}, ResourceScopes: []string{"patient/{type}.rs"}}}}}
	got := c.OfferedScopes()["patient-access"]
	if want := []string{"openid", "patient/*.rs", "patient/Patient.rs", "patient/Coverage.rs"}; !slices.Equal(got, want) {
		t.Fatalf("offered %v, want %v", got, want)
	}
}

func TestKeycloakSyncIsCheckedOnlyWithThePostgresRegistry(t *testing.T) {
	const pg = "registry: {source: postgres, import: clients.yaml, keycloak: %s}\njobs: {postgres_dsn: 'postgres://db/x'}\n"
	ok := "{url: 'http://127.0.0.1:8180', realm: fhirwall, client_id: fhirwall-registry, client_secret_file: kc.secret}"
	c, err := Load(writeConfig(t, strings.Replace(pg, "%s", ok, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Registry.Keycloak; k.ReconcileInterval.Seconds() != 30 || filepath.Base(k.ClientSecretFile) != "kc.secret" || !filepath.IsAbs(k.ClientSecretFile) || !filepath.IsAbs(c.Registry.Import) {
		t.Fatalf("keycloak %+v import %q; want a 30s reconcile and the files beside the config", k, c.Registry.Import)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"no realm":        {strings.Replace(pg, "%s", "{url: 'http://kc', client_id: a, client_secret_file: s}", 1), "registry.keycloak.realm"},
		"no credentials":  {strings.Replace(pg, "%s", "{url: 'http://kc', realm: r}", 1), "client_secret_file"},
		"not a URL":       {strings.Replace(pg, "%s", "{url: 'kc:8180', realm: r, client_id: a, client_secret_file: s}", 1), "registry.keycloak.url"},
		"tight reconcile": {strings.Replace(pg, "%s", "{url: 'http://kc', realm: r, client_id: a, client_secret_file: s, reconcile_interval: 10ms}", 1), "reconcile_interval"},
		"sync of a file":  {"registry: {file: clients.yaml, keycloak: {url: 'http://kc'}}\n", "only with registry.source postgres"},
		"import to file":  {"registry: {file: clients.yaml, import: clients.yaml}\n", "registry.import"},
	} {
		if _, err := Load(writeConfig(t, tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want refused naming %s", name, err, tc.want)
		}
	}
}

func TestXDSLoadsAPostgresRegistryConfigWithoutTheDSN(t *testing.T) {
	path := writeConfig(t, "registry: {source: postgres}\n")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "jobs.postgres_dsn") {
		t.Fatalf("fhirwall-proxy without the DSN: %v, want refused", err)
	}
	if _, err := LoadFor(path, ForXDS); err != nil {
		t.Fatalf("fhirwall-xds, which never opens the registry, refused: %v", err)
	}
	if _, err := LoadFor(writeConfig(t, "registry: {source: ldap}\n"), ForXDS); err == nil {
		t.Fatal("fhirwall-xds accepted registry.source ldap")
	}
}
