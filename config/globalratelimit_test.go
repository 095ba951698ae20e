package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGlobalRateLimitIsValidated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "global.yaml")
	body := `issuers: [{url: http://idp, audience: a}]
registry: {file: clients.yaml}
rate_limits:
  tiers: {standard: {per_second: 10}}
  anonymous: {per_second: 5}
  global: {address: ratelimit-no-port, domain: Not_A_Domain, timeout: 10s}
xds: {node_id: same, ratelimit_node_id: same}
`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil {
		t.Fatal("bad rate_limits.global accepted")
	}
	for _, want := range []string{"rate_limits.global.address", "rate_limits.global.domain", "rate_limits.global.timeout", "xds.ratelimit_node_id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

func TestGlobalRateLimitDefaultsAndEnvironment(t *testing.T) {
	t.Setenv("FHIRWALL_PROXY_DECISION_KEYS_FILE", "decision.keys") // required beside proxy.grpc (on by default)
	p := filepath.Join(t.TempDir(), "global.yaml")
	body := `issuers: [{url: http://idp, audience: a}]
registry: {file: clients.yaml}
rate_limits:
  tiers: {standard: {per_second: 10}}
  anonymous: {per_second: 5}
`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if g := c.RateLimits.Global; g.Enabled() || g.Domain != "fhirwall" || g.Timeout != 100*time.Millisecond || c.XDS.RateLimitNodeID != "fhirwall-ratelimit" {
		t.Fatalf("defaults: %+v node %q", g, c.XDS.RateLimitNodeID)
	}
	t.Setenv("FHIRWALL_RATE_LIMITS_GLOBAL_ADDRESS", "127.0.0.1:8083")
	if c, err = Load(p); err != nil {
		t.Fatal(err)
	}
	if !c.RateLimits.Global.Enabled() || c.RateLimits.Global.Address != "127.0.0.1:8083" {
		t.Fatalf("env: %+v", c.RateLimits.Global)
	}
}
