package main

import (
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/xds"
)

// The stack's config turns the global limit on: Envoy gets the service's cluster, and the service gets
// a RateLimitConfig with every API of the file.
func TestExampleConfigTurnsTheGlobalLimitOn(t *testing.T) {
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.GlobalRateLimit
	if g == nil || g.Service != (xds.Endpoint{Host: "127.0.0.1", Port: 8083}) || g.Domain != "fhirwall" || g.Timeout != 100*time.Millisecond {
		t.Fatalf("global rate limit %+v", g)
	}
	rlc, err := xds.RateLimitConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rlc == nil || rlc.Domain != "fhirwall" || len(rlc.Descriptors) != len(cfg.APIs) {
		t.Fatalf("rate limit config for %d APIs: %v", len(cfg.APIs), rlc)
	}
}

func TestEnvironmentSetsTheGlobalLimitsAddress(t *testing.T) {
	t.Setenv("FHIRWALL_RATE_LIMITS_GLOBAL_ADDRESS", "ratelimit.fhirwall.svc:8081")
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.GlobalRateLimit; g == nil || g.Service != (xds.Endpoint{Host: "ratelimit.fhirwall.svc", Port: 8081}) {
		t.Fatalf("global rate limit %+v", g)
	}
}
