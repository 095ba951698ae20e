package xds

import (
	"errors"
	"testing"

	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

// FuzzTranslate: whatever the config, the pipeline never panics, refuses only with ir.ErrInvalid, and
// anything the IR accepts builds into resources that satisfy Envoy's proto constraints and a consistent
// snapshot. Run with: go test ./internal/xds -run '^$' -fuzz FuzzTranslate -fuzztime 30s
func FuzzTranslate(f *testing.F) {
	for _, cfg := range goldenInputs(f) {
		a1, a2 := API{}, API{}
		if len(cfg.APIs) > 0 {
			a1 = cfg.APIs[0]
		}
		if len(cfg.APIs) > 1 {
			a2 = cfg.APIs[1]
		}
		std := cfg.RateLimits.Tiers["standard"]
		certFile := ""
		if cfg.ListenerTLS != nil {
			certFile = cfg.ListenerTLS.CertFile
		}
		authz, authz2 := cfg.AuthzService, Endpoint{}
		if len(cfg.AuthzServices) > 1 {
			authz, authz2 = cfg.AuthzServices[0], cfg.AuthzServices[1]
		}
		tr := Tracing{}
		if cfg.Tracing != nil {
			tr = *cfg.Tracing
		}
		f.Add(cfg.Listener.Host, cfg.Listener.Port, cfg.FHIRServer.Host, cfg.FHIRServer.Port, cfg.FHIRServer.BasePath,
			authz.Host, authz.Port, authz2.Host, authz2.Port, a1.Name, a1.PathPrefix, a2.Name, a2.PathPrefix,
			"standard", std.PerSecond, std.Burst, cfg.RateLimits.Anonymous.PerSecond, certFile, cfg.PublicURL,
			tr.Collector.Host, tr.Collector.Port, tr.ServiceName, tr.SamplingPercent, tr.TrustIncoming)
	}
	f.Add("127.0.0.1", uint32(1), "a", uint32(65535), "/", "a.b", uint32(65536), "a.b", uint32(65536), "x", "//", "x", "/x/", "", uint32(0), uint32(0), uint32(0), "", "https://[::1]:0/",
		"127.0.0.1", uint32(4317), "%REQ(authorization)%", 101.0, false)
	f.Add("::", uint32(10000), "fe80::1%lo", uint32(80), "/fhir/..", "-a", uint32(1), "127.0.0.1", uint32(0), "a_", "/a/%2F", "b", "/A", "Gold", uint32(1), uint32(0), uint32(0), "rel/tls.crt",
		"http://%REQ(:authority)%/x", "", uint32(0), "", -1.0, true)
	f.Fuzz(func(t *testing.T, lHost string, lPort uint32, fHost string, fPort uint32, base string,
		aHost string, aPort uint32, a2Host string, a2Port uint32, n1, p1, n2, p2 string, tier string, perSecond, burst, anon uint32, certFile, publicURL string,
		tHost string, tPort uint32, tService string, tSampling float64, tTrust bool) {
		cfg := Config{
			Listener:     Endpoint{Host: lHost, Port: lPort},
			FHIRServer:   FHIRServer{Host: fHost, Port: fPort, BasePath: base},
			AuthzService: Endpoint{Host: aHost, Port: aPort},
			PublicURL:    publicURL,
		}
		if a2Host != "" || a2Port != 0 {
			// Several replicas: the list replaces the single address, a DNS name among them makes it STRICT_DNS.
			cfg.AuthzServices = []Endpoint{{Host: aHost, Port: aPort}, {Host: a2Host, Port: a2Port}}
			cfg.LocalServices = cfg.AuthzServices
		}
		if tier != "" {
			cfg.RateLimits = RateLimits{Tiers: map[string]Rate{tier: {PerSecond: perSecond, Burst: burst}}, Anonymous: Rate{PerSecond: anon}}
		}
		if certFile != "" {
			cfg.ListenerTLS = &ListenerTLS{CertFile: certFile, KeyFile: certFile + ".key"}
		}
		if tHost != "" || tPort != 0 || tService != "" {
			cfg.Tracing = &Tracing{Collector: Endpoint{Host: tHost, Port: tPort}, ServiceName: tService, SamplingPercent: tSampling, TrustIncoming: tTrust}
		}
		if n1 != "" || p1 != "" {
			cfg.APIs = append(cfg.APIs, API{Name: n1, PathPrefix: p1})
		}
		if n2 != "" || p2 != "" {
			cfg.APIs = append(cfg.APIs, API{Name: n2, PathPrefix: p2})
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
			t.Fatalf("IR accepted %+v but the snapshot is not usable: %v", cfg, err)
		}
	})
}
