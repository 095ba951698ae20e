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
	if cfg.AuthzService, err = endpoint("xds.authz_address", c.XDS.AuthzAddress); err != nil {
		errs = append(errs, err)
	}
	if cfg.LocalService, err = endpoint("xds.local_address", c.XDS.LocalAddress); err != nil {
		errs = append(errs, err)
	}
	if cfg.FHIRServer, err = fhirServer(c.FHIRServer.URL); err != nil {
		errs = append(errs, err)
	}
	for _, a := range c.APIs {
		cfg.APIs = append(cfg.APIs, xds.API{Name: a.Name, PathPrefix: a.Prefix})
	}
	if c.XDS.NodeID == "" {
		errs = append(errs, errors.New("xds.node_id is empty"))
	}
	return cfg, errors.Join(errs...)
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

func fhirServer(raw string) (xds.FHIRServer, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return xds.FHIRServer{}, fmt.Errorf("fhir_server.url: %w", err)
	}
	if u.Scheme != "http" {
		// TLS to the FHIR server needs an upstream TLS context the translator does not build yet.
		return xds.FHIRServer{}, fmt.Errorf("fhir_server.url %q: only http:// is supported in Envoy mode so far", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return xds.FHIRServer{}, fmt.Errorf("fhir_server.url %q: no user info, query or fragment", raw)
	}
	port := uint64(80)
	if p := u.Port(); p != "" {
		if port, err = strconv.ParseUint(p, 10, 16); err != nil {
			return xds.FHIRServer{}, fmt.Errorf("fhir_server.url %q: port: %w", raw, err)
		}
	}
	return xds.FHIRServer{Host: u.Hostname(), Port: uint32(port), BasePath: u.Path}, nil
}
