package xds

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

// TestRateLimitConfigMatchesGoldenFiles pins the rate limit service's configuration for every golden input
// with a global limit (testdata/out/NAME.ratelimitconfig.yaml; go test ./internal/xds -update).
func TestRateLimitConfigMatchesGoldenFiles(t *testing.T) {
	n := 0
	for name, cfg := range goldenInputs(t) {
		if cfg.GlobalRateLimit == nil {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			rlc, err := RateLimitConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := toYAML(t, []types.Resource{rlc})
			path := filepath.Join("testdata", "out", name+".ratelimitconfig.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/xds -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the generated config; run go test ./internal/xds -update and review the diff\n--- got ---\n%s", path, got)
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden input has a global rate limit")
	}
}

// lookup walks cfg's descriptor tree as envoyproxy/ratelimit does for one request descriptor: at each level
// the entry's key and value, else its key alone (a key without value matches every value); the policy of the
// last node reached, nil when a level has no match.
func lookup(cfg *rlsconfv3.RateLimitConfig, entries ...string) *rlsconfv3.RateLimitPolicy {
	level := cfg.Descriptors
	var last *rlsconfv3.RateLimitDescriptor
	for i := 0; i < len(entries); i += 2 {
		k, v := entries[i], entries[i+1]
		var exact, wild *rlsconfv3.RateLimitDescriptor
		for _, d := range level {
			switch {
			case d.Key == k && d.Value == v:
				exact = d
			case d.Key == k && d.Value == "":
				wild = d
			}
		}
		last = exact
		if last == nil {
			last = wild
		}
		if last == nil {
			return nil
		}
		level = last.Descriptors
	}
	return last.RateLimit
}

// The descriptors both modes send (ratelimit.Descriptors) find the limits the configuration says, and only
// those: this ties the shared descriptor keys to the served tree.
func TestRateLimitConfigServesTheDescriptorsBothModesSend(t *testing.T) {
	cfg := goldenInputs(t)["global-rate-limits"]
	rlc, err := RateLimitConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rlc.Domain != "fhirwall" || rlc.Name != RateLimitConfigName {
		t.Fatalf("domain %q name %q", rlc.Domain, rlc.Name)
	}
	flat := func(api, client, tier, subject string) [][]string {
		var out [][]string
		for _, d := range ratelimit.Descriptors(api, client, tier, subject) {
			var e []string
			for _, x := range d.Entries {
				e = append(e, x.Key, x.Value)
			}
			out = append(out, e)
		}
		return out
	}
	rate := func(p *rlsconfv3.RateLimitPolicy) uint32 {
		if p == nil {
			return 0
		}
		if p.Unit != rlsconfv3.RateLimitUnit_SECOND {
			t.Fatalf("unit %v", p.Unit)
		}
		return p.RequestsPerUnit
	}
	for _, c := range []struct {
		name                   string
		api, client, tier, sub string
		want                   []uint32 // per descriptor: requests per second, 0 for no limit
	}{
		{"standard client and its user", "patient-access", "app1", "standard", "member-1", []uint32{10, 2}},
		{"default tier is standard", "patient-access", "app1", "", "", []uint32{10}},
		{"backend client, its subject has no user counter", "patient-access", "payer9", "backend", "svc", []uint32{50, 0}},
		{"API override, no user counter there", "provider-access", "app1", "standard", "member-1", []uint32{2, 0}},
		{"API override of backend", "provider-access", "payer9", "backend", "", []uint32{200}},
		{"no client: the API's anonymous counter", "patient-access", "", "", "", []uint32{5}},
		{"unknown tier: the anonymous rate, per client", "patient-access", "app1", "gold", "", []uint32{5}},
		{"unknown API: nothing configured", "other", "app1", "standard", "", []uint32{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds := flat(c.api, c.client, c.tier, c.sub)
			if len(ds) != len(c.want) {
				t.Fatalf("descriptors %v, want %d", ds, len(c.want))
			}
			for i, d := range ds {
				if got := rate(lookup(rlc, d...)); got != c.want[i] {
					t.Errorf("descriptor %v: %d/s, want %d/s", d, got, c.want[i])
				}
			}
		})
	}
}

func TestRateLimitSnapshotFollowsTheConfig(t *testing.T) {
	cfg := goldenInputs(t)["global-rate-limits"]
	snap, err := RateLimitSnapshot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(snap.GetResources(resource.RateLimitConfigType)); n != 1 {
		t.Fatalf("%d RateLimitConfigs, want 1", n)
	}
	cfg.RateLimits.Tiers = map[string]Rate{"standard": {PerSecond: 11}, "backend": {PerSecond: 50}}
	next, err := RateLimitSnapshot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if next.GetVersion(resource.RateLimitConfigType) == snap.GetVersion(resource.RateLimitConfigType) {
		t.Fatal("a changed tier kept the snapshot version: the service would not be sent it")
	}
	cfg.GlobalRateLimit = nil
	off, err := RateLimitSnapshot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(off.GetResources(resource.RateLimitConfigType)); n != 0 {
		t.Fatalf("global limit off: %d RateLimitConfigs, want none", n)
	}
	// Envoy's side: the filter after the local limit, fail closed, and per-route descriptors on every limited route.
	on := goldenInputs(t)["global-rate-limits"]
	res := buildResources(t, on)
	listeners := string(toYAML(t, res.Listeners))
	local := strings.Index(listeners, localRateLimitFilterName)
	global := strings.Index(listeners, "name: "+globalRateLimitFilterName+"\n")
	router := strings.Index(listeners, "envoy.filters.http.router")
	if local < 0 || global < local || router < global || !strings.Contains(listeners, "failureModeDeny: true") {
		t.Fatalf("filter order local %d, global %d, router %d (or no failure_mode_deny):\n%s", local, global, router, listeners)
	}
	routes := string(toYAML(t, res.Routes))
	if got, want := strings.Count(routes, globalRateLimitFilterName+":"), strings.Count(routes, localRateLimitFilterName+":"); got != want || got == 0 {
		t.Fatalf("%d routes with the global limit, %d with the local one", got, want)
	}
}

// FuzzRateLimitConfig: a configuration with a global limit is refused with ir.ErrInvalid or gives Envoy
// resources, a usable snapshot for the service, and a RateLimitConfig in which the descriptors both modes
// send for a client of the tier find a limit of at least one request a second.
func FuzzRateLimitConfig(f *testing.F) {
	f.Add("fhirwall", "ratelimit", uint32(8081), int64(100), "patient-access", "standard", uint32(10), uint32(20), uint32(2), "app1", "sub")
	f.Add("", "", uint32(0), int64(0), "", "", uint32(0), uint32(0), uint32(0), "", "")
	f.Add("Fhirwall", "::1", uint32(70000), int64(-1), "a_", "Gold", uint32(1), uint32(0), uint32(1), "x\x00y", "")
	base := goldenInputs(f)["patient-access"]
	f.Fuzz(func(t *testing.T, domain, host string, port uint32, timeoutMs int64, api, tier string, perSecond, burst, userPS uint32, client, subject string) {
		cfg := base
		cfg.GlobalRateLimit = &GlobalRateLimit{Service: Endpoint{Host: host, Port: port}, Domain: domain, Timeout: time.Duration(timeoutMs) * time.Millisecond}
		cfg.APIs = []API{{Name: api, PathPrefix: "/" + api}}
		cfg.RateLimits = RateLimits{Tiers: map[string]Rate{tier: {PerSecond: perSecond, Burst: burst}}, Anonymous: Rate{PerSecond: 1}}
		if userPS > 0 {
			cfg.RateLimits.PerUser = map[string]Rate{tier: {PerSecond: userPS}}
		}
		x, err := Translate(cfg)
		if err != nil {
			if !errors.Is(err, ir.ErrInvalid) {
				t.Fatalf("refusal without ir.ErrInvalid: %v", err)
			}
			return
		}
		res, err := Build(x)
		if err != nil {
			t.Fatalf("IR accepted %+v but Build failed: %v", cfg, err)
		}
		if _, err := res.Snapshot(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		if _, err := RateLimitSnapshot(cfg); err != nil {
			t.Fatalf("rate limit snapshot: %v", err)
		}
		rlc, err := rateLimitConfig(x)
		if err != nil || rlc == nil || rlc.Domain != domain {
			t.Fatalf("rate limit config %v: %v", rlc, err)
		}
		if client == "" {
			return
		}
		for _, d := range ratelimit.Descriptors(api, client, tier, subject)[:1] {
			var e []string
			for _, x := range d.Entries {
				e = append(e, x.Key, x.Value)
			}
			if p := lookup(rlc, e...); p == nil || p.RequestsPerUnit < 1 {
				t.Fatalf("descriptor %v finds %v in %v", e, p, rlc)
			}
		}
	})
}
