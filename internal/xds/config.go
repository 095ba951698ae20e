// Package xds turns fhirwall's configuration into the Envoy resources fhirwall-xds serves over ADS:
// config → IR (package ir, validated whole) → listeners, routes and clusters → a consistent snapshot.
package xds

import (
	"fmt"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

// Config is what the xDS translator needs to know; the caller maps its own configuration onto it.
type Config struct {
	Listener     Endpoint   `yaml:"listener"`
	FHIRServer   FHIRServer `yaml:"fhir_server"`
	AuthzService Endpoint   `yaml:"authz"`
	// LocalService is fhirwall-proxy's local HTTP listener (proxy.local): it answers each API's
	// CapabilityStatement and SMART configuration, which fhirwall generates rather than the FHIR server.
	LocalService Endpoint `yaml:"local"`
	APIs         []API    `yaml:"apis"`
}

// Endpoint is a host (IP address or DNS name) and a port.
type Endpoint struct {
	Host string `yaml:"host"`
	Port uint32 `yaml:"port"`
}

// FHIRServer is the upstream FHIR server; BasePath is its FHIR base, "/fhir" when empty.
type FHIRServer struct {
	Host     string `yaml:"host"`
	Port     uint32 `yaml:"port"`
	BasePath string `yaml:"base_path"`
}

// API is one FHIR API fhirwall exposes (Patient Access, Provider Access, ...) under its own base path.
type API struct {
	Name       string `yaml:"name"`
	PathPrefix string `yaml:"path_prefix"`
}

// Names of the resources fhirwall-xds generates. Golden files and the stack scripts rely on them.
const (
	ListenerName       = "fhirwall_http"
	RouteConfigName    = "fhirwall_routes"
	FHIRServerCluster  = "fhir_server"
	AuthzCluster       = "fhirwall_authz"
	LocalCluster       = "fhirwall_local"
	ClientHeaderPrefix = "x-fhirwall-"
)

// Defaults the configuration does not (yet) expose.
const (
	defaultFHIRBasePath      = "/fhir"
	authzTimeout             = 2 * time.Second // a read may wait on the FHIR server (compartment check, 1.5 s budget)
	authzStatusOnError       = 503
	extProcMessageTimeout    = 2 * time.Second
	authzMaxRequestBytes     = 1 << 20 // = fhir.MaxBodyBytes: the standalone proxy refuses above the same size (413)
	fhirConnectTimeout       = 2 * time.Second
	authzConnectTimeout      = 250 * time.Millisecond
	localConnectTimeout      = 250 * time.Millisecond
	circuitBreakerMaxConns   = 1024
	circuitBreakerMaxPending = 1024
	circuitBreakerMaxReqs    = 1024
	// responseBufferLimitBytes = decision.MaxResponseBytes (limits_test.go): ext_proc receives a response body
	// that needs enforcement BUFFERED, whole, and Envoy holds it in the stream's buffer, whose limit is the
	// listener's per-connection buffer limit. Above it Envoy answers 500 itself (a local reply the mappers turn
	// into an OperationOutcome), as the standalone proxy answers 502: the body never leaves unchecked. The FHIR
	// server cluster gets the same limit so reading the upstream answer is not throttled below it.
	responseBufferLimitBytes = 16 << 20
)

// Translate builds the IR for cfg and validates it; the error lists every problem found.
func Translate(cfg Config) (*ir.Xds, error) {
	base := cleanPrefix(cfg.FHIRServer.BasePath)
	if base == "" {
		base = defaultFHIRBasePath
	}
	l := &ir.HTTPListener{
		Name:                     ListenerName,
		Address:                  cfg.Listener.Host,
		Port:                     cfg.Listener.Port,
		StripRequestHeaderPrefix: ClientHeaderPrefix,
		BufferLimitBytes:         responseBufferLimitBytes,
		ExtAuthz: &ir.ExtAuthz{
			Cluster:         AuthzCluster,
			Timeout:         authzTimeout,
			StatusOnError:   authzStatusOnError,
			MaxRequestBytes: authzMaxRequestBytes,
		},
		// The same fhirwall-proxy serves ext_proc; response enforcement and the audit write happen inside
		// this timeout.
		ExtProc: &ir.ExtProc{Cluster: AuthzCluster, MessageTimeout: extProcMessageTimeout, BufferResponseBody: true},
	}
	for _, api := range cfg.APIs {
		prefix := cleanPrefix(api.PathPrefix)
		// The API's own documents come before its prefix (first match wins), go to fhirwall-proxy with the
		// path unchanged, and pass ext_authz and ext_proc like every other request, so they are audited.
		for _, doc := range localDocuments {
			l.Routes = append(l.Routes, &ir.HTTPRoute{Name: api.Name + doc.suffix, Path: prefix + doc.path, Cluster: LocalCluster})
		}
		l.Routes = append(l.Routes, &ir.HTTPRoute{
			Name:            api.Name,
			PathPrefix:      prefix,
			RewritePrefix:   base,
			ForwardedPrefix: prefix,
			Cluster:         FHIRServerCluster,
		})
	}
	x := &ir.Xds{
		Listener: l,
		Clusters: []*ir.Cluster{
			fhirCluster(irCluster(FHIRServerCluster, cfg.FHIRServer.Host, cfg.FHIRServer.Port, false, fhirConnectTimeout)),
			irCluster(AuthzCluster, cfg.AuthzService.Host, cfg.AuthzService.Port, true, authzConnectTimeout),
			irCluster(LocalCluster, cfg.LocalService.Host, cfg.LocalService.Port, false, localConnectTimeout),
		},
	}
	if err := x.Validate(); err != nil {
		return nil, fmt.Errorf("translate config: %w", err)
	}
	return x, nil
}

// localDocuments are the paths below an API's base that fhirwall-proxy answers itself (internal/capability).
var localDocuments = []struct{ path, suffix string }{
	{"/metadata", "-metadata"},                                   // FHIR R4 capabilities interaction
	{"/.well-known/smart-configuration", "-smart-configuration"}, // SMART App Launch 2.x §Discovery
}

func irCluster(name, host string, port uint32, http2 bool, connect time.Duration) *ir.Cluster {
	return &ir.Cluster{
		Name:               name,
		Host:               host,
		Port:               port,
		HTTP2:              http2,
		ConnectTimeout:     connect,
		MaxConnections:     circuitBreakerMaxConns,
		MaxPendingRequests: circuitBreakerMaxPending,
		MaxRequests:        circuitBreakerMaxReqs,
	}
}

func fhirCluster(c *ir.Cluster) *ir.Cluster {
	c.BufferLimitBytes = responseBufferLimitBytes
	return c
}

// cleanPrefix drops one trailing slash so "/patient-access/fhir/" and "/patient-access/fhir" mean the same
// API; anything stranger is left for the IR to refuse.
func cleanPrefix(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}
