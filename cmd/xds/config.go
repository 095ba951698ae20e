package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/xds"
)

// xdsConfig maps fhirwall's configuration onto the translator's input.
func xdsConfig(c *config.Config) (xds.Config, error) {
	var errs []error
	var cfg xds.Config
	var err error
	if cfg.Listener, err = endpoint("xds.envoy_listen", c.XDS.EnvoyListen); err != nil {
		errs = append(errs, err)
	}
	if cfg.AuthzServices, err = endpoints("xds.authz_addresses", c.XDS.AuthzAddressList()); err != nil {
		errs = append(errs, err)
	}
	if cfg.LocalServices, err = endpoints("xds.local_addresses", c.XDS.LocalAddressList()); err != nil {
		errs = append(errs, err)
	}
	if cfg.FHIRServer, err = fhirServer(c.FHIRServer); err != nil {
		errs = append(errs, err)
	}
	cfg.AuthzTimeout = c.XDS.AuthzTimeout
	// The FHIR server writes its links from this, never from the client's Host.
	cfg.PublicURL = c.PublicURL
	// Envoy's side of proxy.max_in_flight: each request holds an ext_authz call, then an ext_proc stream. As in
	// the standalone proxy, requests being decided get the wider bound, so that a burst of one client reaches
	// the local rate limit (after ext_authz) and is told 429 rather than overflowing the cluster with 503:
	// at twice max_in_flight, a burst of 160 against 64 got 30 x 503.
	if c.Proxy.MaxInFlight > 0 {
		cfg.AuthzMaxRequests = uint32(c.Proxy.DecidingLimit() + c.Proxy.InFlightLimit())
	}
	if t := c.XDS.TLS; t.CertFile != "" {
		cfg.ListenerTLS = &xds.ListenerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
	}
	cfg.RateLimits = xds.RateLimits{Tiers: c.RateLimits.Tiers, Anonymous: c.RateLimits.Anonymous, MaxClients: c.RateLimits.MaxClients,
		PerUser: c.RateLimits.PerUser, MaxUsers: c.RateLimits.MaxUsers}
	if g := c.RateLimits.Global; g.Enabled() {
		// Envoy's cluster to the rate limit service, and the RateLimitConfig fhirwall-xds serves it.
		svc, err := endpoint("rate_limits.global.address", g.Address)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.GlobalRateLimit = &xds.GlobalRateLimit{Service: svc, Domain: g.Domain, Timeout: g.Timeout}
	}
	if t := c.Tracing; t.Enabled() {
		collector, err := endpoint("tracing.endpoint", t.Endpoint)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.Tracing = &xds.Tracing{Collector: collector, ServiceName: t.EnvoyServiceName, SamplingPercent: t.SamplingPercent, TrustIncoming: t.TrustIncoming}
	}
	for _, a := range c.APIs {
		api := xds.API{Name: a.Name, PathPrefix: a.Prefix, RateLimits: a.RateLimits, CORSOrigins: a.CORS.AllowedOrigins}
		for path, n := range a.BodyLimits() {
			if api.BodyLimits == nil {
				api.BodyLimits = map[string]uint32{}
			}
			api.BodyLimits[path] = uint32(n) // config.Validate bounds it
		}
		cfg.APIs = append(cfg.APIs, api)
	}
	if c.XDS.NodeID == "" {
		errs = append(errs, errors.New("xds.node_id is empty"))
	}
	return cfg, errors.Join(errs...)
}

// endpoints parses each host:port of a list.
func endpoints(key string, list []string) ([]xds.Endpoint, error) {
	var out []xds.Endpoint
	var errs []error
	for _, hp := range list {
		e, err := endpoint(key, hp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

func endpoint(key, hostport string) (xds.Endpoint, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return xds.Endpoint{}, fmt.Errorf("%s %q: %w", key, hostport, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return xds.Endpoint{}, fmt.Errorf("%s %q: port: %w", key, hostport, err)
	}
	return xds.Endpoint{Host: host, Port: uint32(p)}, nil
}

func fhirServer(f config.FHIRServer) (xds.FHIRServer, error) {
	raw := f.URL
	u, err := url.Parse(raw)
	if err != nil {
		return xds.FHIRServer{}, fmt.Errorf("fhir_server.url: %w", err)
	}
	var tls *xds.UpstreamTLS
	switch {
	case u.Scheme == "https" && f.CAFile == "":
		// Envoy verifies the FHIR server or does not talk to it.
		return xds.FHIRServer{}, fmt.Errorf("fhir_server.url %q: https needs fhir_server.ca_file, the CA that signed the server's certificate", raw)
	case u.Scheme == "https":
		tls = &xds.UpstreamTLS{CAFile: f.CAFile, ServerName: f.ServerName}
	case u.Scheme != "http":
		return xds.FHIRServer{}, fmt.Errorf("fhir_server.url %q: want http:// or https://", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return xds.FHIRServer{}, fmt.Errorf("fhir_server.url %q: no user info, query or fragment", raw)
	}
	port := uint64(80)
	if tls != nil {
		port = 443
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.ParseUint(p, 10, 16); err != nil {
			return xds.FHIRServer{}, fmt.Errorf("fhir_server.url %q: port: %w", raw, err)
		}
	}
	return xds.FHIRServer{Host: u.Hostname(), Port: uint32(port), BasePath: u.Path, TLS: tls,
		Timeout: f.Timeout, ConnectTimeout: f.ConnectTimeout}, nil
}
