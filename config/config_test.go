package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/ratelimit"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.APIs[0].Name != "patient-access" || c.Issuers[0].Audience != "fhirwall" || c.Proxy.GRPC == "" {
		t.Fatalf("got %+v", c)
	}
}

func TestBadConfigNamesEveryProblem(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	body := "fhir_server: {url: ftp://x}\nissuers: [{url: nope}]\napis: [{name: foo, prefix: bar/}]\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"fhir_server.url", "issuers[0].url", "issuers[0].audience", "apis[0].name", "apis[0].prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

func TestUnknownKeysAreRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "typo.yaml")
	if err := os.WriteFile(p, []byte("issuer: [{url: http://x, audience: a}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil {
		t.Fatal("misspelt key accepted")
	}
}

func TestBadRateLimitsAreAllReported(t *testing.T) {
	p := filepath.Join(t.TempDir(), "limits.yaml")
	body := `issuers: [{url: http://idp, audience: a}]
registry: {file: clients.yaml}
rate_limits:
  tiers:
    gold: {per_second: 0}
    Bad: {per_second: 10, burst: 5}
  per_user:
    platinum: {per_second: 1}
    bad: {per_second: 20}
apis:
  - {name: patient-access, prefix: /pa, rate_limits: {platinum: {per_second: 1}}}
xds: {tls: {cert_file: only-a-cert.pem}}
`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil {
		t.Fatal("bad rate limits accepted")
	}
	for _, want := range []string{"rate_limits.tiers.gold: per_second", "burst 5 is below", `define "standard"`,
		"rate_limits.anonymous", "apis[0].rate_limits.platinum: not a tier", "xds.tls",
		"rate_limits.per_user.platinum: not a tier", "rate_limits.per_user.bad: want per_second below"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

func TestLimitsCarryPerAPIOverrides(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.APIs[1].RateLimits = map[string]ratelimit.Rate{"backend": {PerSecond: 7}}
	l := c.Limits()
	if !l.Enabled() || l.Tiers["standard"].PerSecond != 50 || l.PerAPI["provider-access"]["backend"].PerSecond != 7 || len(l.PerAPI) != 5 { // payer-to-payer, prior-auth and their sandboxes, provider-access
		t.Fatalf("limits = %+v", l)
	}
}

func TestCheckSpoolNamesWhatTheProxyNeeds(t *testing.T) {
	ok := Audit{SigningKeyFile: "/k", Spool: Spool{Dir: "/s", MaxBytes: 1 << 30, SegmentBytes: 16 << 20}}
	if err := ok.CheckSpool(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		mut  func(*Audit)
		want string
	}{
		"no dir":             {func(a *Audit) { a.Spool.Dir = "" }, "audit.spool.dir is required"},
		"no key":             {func(a *Audit) { a.SigningKeyFile = "" }, "fhirwall audit keygen"},
		"tiny budget":        {func(a *Audit) { a.Spool.MaxBytes = 1000 }, "at least 1 MiB"},
		"segments too large": {func(a *Audit) { a.Spool.SegmentBytes = 512 << 20 }, "a quarter of max_bytes"},
		"negative":           {func(a *Audit) { a.Spool.CheckpointEvery = -1 }, "cannot be negative"},
	} {
		a := ok
		c.mut(&a)
		if err := a.CheckSpool(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestFHIRServerClientSettingsAreValidated(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if f := c.FHIRServer; f.Timeout != 30*time.Second || f.ConnectTimeout != 2*time.Second || c.LookupTimeout() != 1500*time.Millisecond {
		t.Errorf("fhir_server timeouts %v/%v/%v, want 30s/2s/1.5s", f.Timeout, f.ConnectTimeout, c.LookupTimeout())
	}
	// Unset, the lookup timeout fits under whatever the authz timeout is.
	derived := *c
	derived.FHIRServer.LookupTimeout, derived.XDS.AuthzTimeout = 0, 1500*time.Millisecond
	if err := derived.Validate(); err != nil || derived.LookupTimeout() != 1125*time.Millisecond {
		t.Errorf("lookup timeout under a 1.5s authz timeout: %v %v, want 1.125s", derived.LookupTimeout(), err)
	}
	derived.XDS.AuthzTimeout = 0
	if derived.LookupTimeout() != 1500*time.Millisecond {
		t.Errorf("lookup timeout under the default authz timeout: %v, want 1.5s", derived.LookupTimeout())
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"lookup not shorter than the authz timeout": {func(c *Config) { c.FHIRServer.LookupTimeout = 2 * time.Second }, "xds.authz_timeout"},
		"lookup longer than the request timeout": {func(c *Config) {
			c.FHIRServer.Timeout = time.Second
			c.FHIRServer.LookupTimeout = 1200 * time.Millisecond
		}, "at most fhir_server.timeout"},
		"negative lookup":            {func(c *Config) { c.FHIRServer.LookupTimeout = -time.Second }, "fhir_server.lookup_timeout"},
		"CA for plain http":          {func(c *Config) { c.FHIRServer.CAFile = "/etc/ca.pem" }, "only for an https url"},
		"server name for plain http": {func(c *Config) { c.FHIRServer.ServerName = "hapi.internal" }, "only for an https url"},
	} {
		bad := *c
		tc.edit(&bad)
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, tc.want)
		}
	}
	ok := *c
	ok.FHIRServer.URL, ok.FHIRServer.CAFile, ok.FHIRServer.ServerName = "https://hapi.internal/fhir", "/etc/ca.pem", "hapi.internal"
	ok.XDS.AuthzTimeout, ok.FHIRServer.LookupTimeout = 5*time.Second, 3*time.Second
	if err := ok.Validate(); err != nil {
		t.Errorf("https with a CA and a lookup under a longer authz timeout: %v", err)
	}
}

func TestStandalonePublicURLComesFromConfigurationNeverGuessed(t *testing.T) {
	c, err := Load("fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.PublicURL != "http://127.0.0.1:8080" {
		t.Errorf("proxy.public_url unset: %q, want http:// + proxy.http", c.Proxy.PublicURL)
	}
	t.Setenv("FHIRWALL_PROXY_PUBLIC_URL", "https://fhir.payer.example/gw")
	if c, err := Load("fhirwall.yaml"); err != nil || c.Proxy.PublicURL != "https://fhir.payer.example/gw" {
		t.Errorf("FHIRWALL_PROXY_PUBLIC_URL: %q %v", c.Proxy.PublicURL, err)
	}
	for _, bad := range []string{"", "fhir.payer.example", "ftp://fhir.payer.example", "https://fhir.payer.example/",
		"https://fhir.payer.example?x=1", "https://fhir.payer.example#f", "https://evil.example@fhir.payer.example", "https:///fhir"} {
		b := *c
		b.Proxy.PublicURL = bad
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "proxy.public_url") {
			t.Errorf("proxy.public_url %q: %v, want refused", bad, err)
		}
	}
	for _, all := range []string{"0.0.0.0:8080", ":8080", "[::]:8080"} {
		b := *c
		b.Proxy.HTTP, b.Proxy.PublicURL = all, "http://"+all
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "proxy.public_url: required") {
			t.Errorf("proxy.http %s with the default public URL: %v, want proxy.public_url required", all, err)
		}
		b.Proxy.PublicURL = "https://fhir.payer.example"
		if err := b.Validate(); err != nil {
			t.Errorf("proxy.http %s with proxy.public_url set: %v", all, err)
		}
	}
	off := *c
	off.Proxy.HTTP, off.Proxy.PublicURL = "", ""
	if err := off.Validate(); err != nil {
		t.Errorf("no standalone listener, no public URL: %v", err)
	}
}
