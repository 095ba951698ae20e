// Package xds turns fhirwall's configuration into the Envoy resources fhirwall-xds serves over ADS:
// config → IR (package ir, validated whole) → listeners, routes and clusters → a consistent snapshot.
package xds

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/cors"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

// Config is what the xDS translator needs to know; the caller maps its own configuration onto it.
type Config struct {
	Listener Endpoint `yaml:"listener"`
	// ListenerTLS, when set, terminates TLS at the listener.
	ListenerTLS  *ListenerTLS `yaml:"listener_tls"`
	FHIRServer   FHIRServer   `yaml:"fhir_server"`
	AuthzService Endpoint     `yaml:"authz"`
	// AuthzServices are several fhirwall-proxy replicas' gRPC addresses (ext_authz and ext_proc); when set
	// it replaces AuthzService. IP addresses make a STATIC cluster, a DNS name (a Kubernetes headless
	// Service) a STRICT_DNS one.
	AuthzServices []Endpoint `yaml:"authz_services"`
	// AuthzTimeout bounds each ext_authz call (and ext_proc message); 0: 2 s. Past it the request is refused.
	AuthzTimeout time.Duration `yaml:"authz_timeout"`
	// AuthzMaxRequests bounds the ext_authz calls and ext_proc streams Envoy has open to fhirwall-proxy at
	// once (the authz cluster's circuit breaker); one more is refused at once with 503 rather than queued
	// behind a saturated proxy until the timeout. 0: 1024.
	AuthzMaxRequests uint32 `yaml:"authz_max_requests"`
	// LocalService is fhirwall-proxy's local HTTP listener (proxy.local): it answers each API's
	// CapabilityStatement and SMART configuration, which fhirwall generates rather than the FHIR server.
	LocalService Endpoint `yaml:"local"`
	// LocalServices are the replicas' local listeners, as AuthzServices their gRPC ports.
	LocalServices []Endpoint `yaml:"local_services"`
	// RateLimits are the per-client limits of every API; an API may override a tier's rate.
	RateLimits RateLimits `yaml:"rate_limits"`
	// GlobalRateLimit, when set, adds the limit all Envoys and standalone proxies share (rate_limits.global):
	// Envoy asks this rate limit service after its local limit, and fhirwall-xds serves the service its
	// configuration (RateLimitConfigs). Nil: local limits only.
	GlobalRateLimit *GlobalRateLimit `yaml:"global_rate_limit"`
	// PublicURL is where apps reach Envoy, without an API's prefix (public_url, e.g. https://fhir.example.com):
	// each API's public base is PublicURL + its prefix, and the FHIR server writes its links from that, never
	// from the Host or Forwarded headers a client sent.
	PublicURL string `yaml:"public_url"`
	APIs      []API  `yaml:"apis"`
	// Tracing, when set, has Envoy trace every request and export its spans to a collector; nil: no tracing.
	Tracing *Tracing `yaml:"tracing"`
}

// Tracing is Envoy's side of config tracing: the collector's OTLP/gRPC endpoint, the service name Envoy's
// spans carry, the share of new traces sampled, and whether a client's traceparent may continue its trace.
type Tracing struct {
	Collector       Endpoint `yaml:"collector"`
	ServiceName     string   `yaml:"service_name"`
	SamplingPercent float64  `yaml:"sampling_percent"`
	TrustIncoming   bool     `yaml:"trust_incoming"`
}

// ListenerTLS names the certificate and key files (PEM) Envoy serves; they are watched for rotation.
type ListenerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// UpstreamTLS is how Envoy verifies an https FHIR server.
type UpstreamTLS struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"` // empty: the FHIR server's host
}

// RateLimits gives each client tier (the client registry's "tier") a rate per client and API, and the
// shared rate of requests that carry no client (discovery documents). No tiers: no rate limits.
type RateLimits struct {
	Tiers     map[string]Rate `yaml:"tiers"`
	Anonymous Rate            `yaml:"anonymous"`
	// MaxClients bounds the client buckets Envoy keeps per API and tier; 0: 10000.
	MaxClients uint32 `yaml:"max_clients"`
	// PerUser gives each user (token subject) of a client of the tiers named here its own bucket besides
	// the client's; MaxUsers bounds those kept per API and tier (0: 100000).
	PerUser  map[string]Rate `yaml:"per_user"`
	MaxUsers uint32          `yaml:"max_users"`
}

// GlobalRateLimit is the rate limit service (envoyproxy/ratelimit) both modes ask.
type GlobalRateLimit struct {
	Service Endpoint `yaml:"service"`
	// Domain keys the service's configuration; the same in Envoy and the standalone proxy (fhirwall).
	Domain string `yaml:"domain"`
	// Timeout bounds one call; past it the request is refused (503). 0: 100ms.
	Timeout time.Duration `yaml:"timeout"`
}

// Rate is a token bucket: PerSecond requests each second, up to Burst at once (0: PerSecond).
type Rate = ratelimit.Rate

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
	// TLS, when set, makes Envoy speak verified TLS to the FHIR server.
	TLS *UpstreamTLS `yaml:"tls"`
	// Timeout bounds one request to the FHIR server (0: 30 s); ConnectTimeout one connection attempt (0: 2 s).
	Timeout        time.Duration `yaml:"timeout"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// API is one FHIR API fhirwall exposes (Patient Access, Provider Access, ...) under its own base path.
type API struct {
	Name       string `yaml:"name"`
	PathPrefix string `yaml:"path_prefix"`
	// RateLimits overrides RateLimits.Tiers for this API, tier by tier.
	RateLimits map[string]Rate `yaml:"rate_limits"`
	// CORSOrigins are the browser origins that may read the API's data (apis[].cors.allowed_origins); its
	// discovery documents are readable from any origin.
	CORSOrigins []string `yaml:"cors_origins"`
	// BodyLimits are the operations whose request bodies may exceed the 1 MiB ext_authz limit, by path below
	// the API's base (config operations[].max_body_bytes): each gets an exact route with its own limit.
	BodyLimits map[string]uint32 `yaml:"body_limits"`
}

// Names of the resources fhirwall-xds generates. Golden files and the stack scripts rely on them.
const (
	ListenerName    = "fhirwall_http"
	RouteConfigName = "fhirwall_routes"
	// FHIRServerClusterPrefix + API name is each API's own cluster for the FHIR server: its own circuit
	// breakers, outlier detection and stats, so one API's overload or errors never hide another's.
	FHIRServerClusterPrefix = "fhir_server_"
	AuthzCluster            = "fhirwall_authz"
	RateLimitCluster        = "fhirwall_ratelimit"
	LocalCluster            = "fhirwall_local"
	TracingCluster          = "fhirwall_tracing"
	ListenerSecret          = "fhirwall_listener_cert"
	ClientHeaderPrefix      = "x-fhirwall-"
)

// Defaults the configuration does not (yet) expose.
const (
	defaultFHIRBasePath     = "/fhir"
	defaultAuthzTimeout     = 2 * time.Second // a read may wait on the FHIR server (compartment check, 1.5 s budget)
	authzStatusOnError      = 503
	authzMaxRequestBytes    = 1 << 20 // = fhir.MaxBodyBytes: the standalone proxy refuses above the same size (413)
	defaultFHIRConnect      = 2 * time.Second
	defaultFHIRTimeout      = 30 * time.Second
	defaultMaxClients       = 10000
	defaultMaxUsers         = 100000
	rateFillInterval        = time.Second
	authzConnectTimeout     = 250 * time.Millisecond
	localConnectTimeout     = 250 * time.Millisecond
	defaultGlobalTimeout    = 100 * time.Millisecond
	rateLimitConnectTimeout = 250 * time.Millisecond
	tracingConnectTimeout   = 250 * time.Millisecond
	// authzEjectAfter failures in a row to reach a fhirwall-proxy replica take it out of its clusters.
	authzEjectAfter = 2
	// The gRPC health check of each replica (grpc.health.v1, served beside ext_authz and ext_proc).
	authzHealthInterval      = time.Second
	authzHealthTimeout       = 500 * time.Millisecond
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
// AdapterMessageTimeout is the longest fhirwall-proxy may extend one ext_proc message's timeout to, for a
// request an adapter answers itself: config.AdapterTimeout (PAS's 15 s) and a second for the audit write.
const AdapterMessageTimeout = 16 * time.Second

func Translate(cfg Config) (*ir.Xds, error) {
	base := cleanPrefix(cfg.FHIRServer.BasePath)
	if base == "" {
		base = defaultFHIRBasePath
	}
	authzTimeout := orDefault(cfg.AuthzTimeout, defaultAuthzTimeout)
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
		// An adapter's answer (Prior Authorization $submit) may take up to config.AdapterTimeout: fhirwall-proxy
		// extends that one message's timeout, never past MaxMessageTimeout.
		ExtProc: &ir.ExtProc{Cluster: AuthzCluster, MessageTimeout: authzTimeout, BufferResponseBody: true, ForwardHeaders: extProcForwardedHeaders,
			MaxMessageTimeout: max(AdapterMessageTimeout, authzTimeout)},
	}
	if t := cfg.ListenerTLS; t != nil {
		l.TLS = &ir.ListenerTLS{SecretName: ListenerSecret, CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
	}
	x := &ir.Xds{Listener: l}
	var errs []error
	public, err := publicBase(cfg.PublicURL)
	if err != nil {
		errs = append(errs, err)
	}
	for _, api := range cfg.APIs {
		prefix := cleanPrefix(api.PathPrefix)
		limit, err := rateLimit(cfg.RateLimits, api)
		if err != nil {
			errs = append(errs, err)
		}
		// The API's own documents come before its prefix (first match wins), go to fhirwall-proxy with the
		// path unchanged, and pass ext_authz and ext_proc like every other request, so they are audited.
		for _, doc := range localDocuments {
			l.Routes = append(l.Routes, &ir.HTTPRoute{Name: api.Name + doc.suffix, Path: prefix + doc.path, Cluster: LocalCluster, RateLimit: limit,
				CORS: corsPolicy(cors.Policy{AnyOrigin: true})})
		}
		// Operations with a larger body than the listener's ext_authz limit (Payer-to-Payer's
		// $bulk-member-match) get an exact route with their own: fhirwall-proxy answers them itself (ext_proc,
		// at the request headers), so their cluster is its local listener, and nothing reaches the FHIR server.
		for _, path := range slices.Sorted(maps.Keys(api.BodyLimits)) {
			name := api.Name + "-" + strings.ToLower(strings.NewReplacer("/", "-", "$", "").Replace(strings.TrimPrefix(path, "/")))
			l.Routes = append(l.Routes, &ir.HTTPRoute{Name: name, Path: prefix + path, Cluster: LocalCluster, RateLimit: limit,
				CORS: corsPolicy(cors.Policy{Origins: api.CORSOrigins}), MaxRequestBytes: api.BodyLimits[path]})
		}
		cluster := FHIRServerClusterPrefix + api.Name
		route := &ir.HTTPRoute{
			Name:          api.Name,
			PathPrefix:    prefix,
			RewritePrefix: base,
			Cluster:       cluster,
			Timeout:       orDefault(cfg.FHIRServer.Timeout, defaultFHIRTimeout),
			RateLimit:     limit,
		}
		// Always a policy, even one admitting no origin: a preflight is then answered by Envoy's CORS filter
		// (without CORS headers) instead of reaching ext_authz as a request without a token.
		route.CORS = corsPolicy(cors.Policy{Origins: api.CORSOrigins})
		if public != nil {
			// The same base the API's CapabilityStatement names (public_url + prefix).
			route.Forwarded = &ir.Forwarded{Proto: public.Scheme, Host: public.Host, Prefix: public.Path + prefix}
		}
		l.Routes = append(l.Routes, route)
		x.Clusters = append(x.Clusters, fhirCluster(cluster, cfg.FHIRServer))
	}
	x.Clusters = append(x.Clusters, authzCluster(cfg), localCluster(cfg))
	if g := cfg.GlobalRateLimit; g != nil {
		l.GlobalRateLimit = &ir.GlobalRateLimit{Cluster: RateLimitCluster, Domain: g.Domain, Timeout: orDefault(g.Timeout, defaultGlobalTimeout)}
		// Every limited request makes one call, as it makes one to ext_authz: the same admission bound.
		c := irCluster(RateLimitCluster, []Endpoint{g.Service}, true, rateLimitConnectTimeout)
		if cfg.AuthzMaxRequests > 0 {
			c.MaxRequests = cfg.AuthzMaxRequests
		}
		x.Clusters = append(x.Clusters, c)
	}
	if t := cfg.Tracing; t != nil {
		l.Tracing = &ir.Tracing{Cluster: TracingCluster, ServiceName: t.ServiceName, SamplingPercent: t.SamplingPercent, TrustIncoming: t.TrustIncoming}
		x.Clusters = append(x.Clusters, irCluster(TracingCluster, []Endpoint{t.Collector}, true, tracingConnectTimeout))
	}
	if err := x.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("translate config: %w", err)
	}
	return x, nil
}

// publicBase parses PublicURL: an absolute http(s) URL, nothing but scheme, host[:port] and a path (the
// IR checks the parts). A trailing slash is dropped, as from prefixes.
func publicBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return nil, fmt.Errorf("%w: public_url is empty: the FHIR server's links need the public base apps use", ir.ErrInvalid)
	case err != nil:
		return nil, fmt.Errorf("%w: public_url %q: %v", ir.ErrInvalid, raw, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return nil, fmt.Errorf("%w: public_url %q: want an absolute http:// or https:// URL", ir.ErrInvalid, raw)
	case u.User != nil, u.RawQuery != "", u.ForceQuery, u.Fragment != "", u.RawPath != "":
		return nil, fmt.Errorf("%w: public_url %q: no user info, query, fragment or escapes", ir.ErrInvalid, raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// rateLimit is api's per-client limit: the global tiers with the API's overrides; nil without tiers.
func rateLimit(rl RateLimits, api API) (*ir.RateLimit, error) {
	tiers := map[string]Rate{}
	for name, r := range rl.Tiers {
		tiers[name] = r
	}
	for name, r := range api.RateLimits {
		if _, ok := tiers[name]; !ok {
			return nil, fmt.Errorf("%w: api %q: rate_limits names tier %q that rate_limits.tiers does not define", ir.ErrInvalid, api.Name, name)
		}
		tiers[name] = r
	}
	if len(tiers) == 0 {
		return nil, nil
	}
	out := &ir.RateLimit{
		API:          api.Name,
		ClientHeader: ratelimit.ClientHeader,
		TierHeader:   ratelimit.TierHeader,
		UserHeader:   ratelimit.UserHeader,
		Anonymous:    bucket(rl.Anonymous),
		MaxClients:   rl.MaxClients,
		MaxUsers:     rl.MaxUsers,
	}
	if out.MaxClients == 0 {
		out.MaxClients = defaultMaxClients
	}
	if out.MaxUsers == 0 {
		out.MaxUsers = defaultMaxUsers
	}
	for name := range rl.PerUser {
		if _, ok := tiers[name]; !ok {
			return nil, fmt.Errorf("%w: rate_limits.per_user names tier %q that rate_limits.tiers does not define", ir.ErrInvalid, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(tiers)) {
		t := ir.TierLimit{Tier: name, Bucket: bucket(tiers[name])}
		// An API that overrides the tier to a rate no faster than its users' has no user buckets: the
		// client's is the strictest, and Envoy would take from it first (routeRateLimit).
		if r, ok := rl.PerUser[name]; ok && r.PerSecond < tiers[name].PerSecond {
			b := bucket(r)
			t.PerUser = &b
		}
		out.Tiers = append(out.Tiers, t)
	}
	return out, nil
}

// bucket is Envoy's token bucket for r: refilled once a second, so "per_second" reads as it says.
func bucket(r Rate) ir.Bucket {
	burst := r.Burst
	if burst == 0 {
		burst = r.PerSecond
	}
	return ir.Bucket{MaxTokens: burst, TokensPerFill: r.PerSecond, FillInterval: rateFillInterval}
}

// corsPolicy is p as Envoy's CORS filter applies it: the same methods and headers as the standalone proxy.
func corsPolicy(p cors.Policy) *ir.CORS {
	return &ir.CORS{
		AnyOrigin:     p.AnyOrigin,
		Origins:       slices.Clone(p.Origins),
		AllowMethods:  strings.Join(cors.AllowMethods, ","),
		AllowHeaders:  strings.Join(cors.AllowHeaders, ","),
		ExposeHeaders: strings.Join(cors.ExposeHeaders, ","),
		MaxAge:        cors.MaxAgeSeconds,
	}
}

// localDocuments are the paths below an API's base that fhirwall-proxy answers itself (internal/capability).
var localDocuments = []struct{ path, suffix string }{
	{"/metadata", "-metadata"},                                   // FHIR R4 capabilities interaction
	{"/.well-known/smart-configuration", "-smart-configuration"}, // SMART App Launch 2.x §Discovery
}

func irCluster(name string, endpoints []Endpoint, http2 bool, connect time.Duration) *ir.Cluster {
	eps := make([]ir.Endpoint, 0, len(endpoints))
	for _, e := range endpoints {
		eps = append(eps, ir.Endpoint{Host: e.Host, Port: e.Port})
	}
	return &ir.Cluster{
		Name:               name,
		Endpoints:          eps,
		HTTP2:              http2,
		ConnectTimeout:     connect,
		MaxConnections:     circuitBreakerMaxConns,
		MaxPendingRequests: circuitBreakerMaxPending,
		MaxRequests:        circuitBreakerMaxReqs,
	}
}

// authzCluster is Envoy's way to fhirwall-proxy's ext_authz and ext_proc, with its admission bound. A
// replica that dies (SIGKILL: no goodbye) is taken out within about a second: its refused connections and
// gateway errors eject it at once (outlier detection), and the gRPC health check keeps it out until it
// answers SERVING again. Both act per Envoy; every Envoy finds out for itself.
func authzCluster(cfg Config) *ir.Cluster {
	c := irCluster(AuthzCluster, endpoints(cfg.AuthzServices, cfg.AuthzService), true, authzConnectTimeout)
	if cfg.AuthzMaxRequests > 0 {
		c.MaxRequests = cfg.AuthzMaxRequests
	}
	c.Outlier = &ir.Outlier{
		ConsecutiveLocalFailures:   authzEjectAfter,
		ConsecutiveGatewayFailures: authzEjectAfter,
		Interval:                   time.Second,
		BaseEjection:               5 * time.Second,
		// Every replica may be ejected: then requests fail closed (503) rather than reach a dead one.
		MaxEjectionPercent: 100,
	}
	c.HealthCheck = &ir.GRPCHealthCheck{
		Interval:           authzHealthInterval,
		Timeout:            authzHealthTimeout,
		UnhealthyThreshold: 2,
		HealthyThreshold:   1,
	}
	return c
}

// localCluster is Envoy's way to the replicas' local listeners (discovery documents, adapter endpoints).
func localCluster(cfg Config) *ir.Cluster {
	c := irCluster(LocalCluster, endpoints(cfg.LocalServices, cfg.LocalService), false, localConnectTimeout)
	c.Outlier = &ir.Outlier{
		ConsecutiveLocalFailures: authzEjectAfter,
		Interval:                 time.Second,
		BaseEjection:             5 * time.Second,
		MaxEjectionPercent:       100,
	}
	return c
}

// endpoints is the list when given, else the single endpoint.
func endpoints(list []Endpoint, one Endpoint) []Endpoint {
	if len(list) > 0 {
		return list
	}
	return []Endpoint{one}
}

// fhirCluster is one API's way to the FHIR server: answers as large as response enforcement accepts, and
// a host that keeps failing is ejected for a while, so requests fail fast (503) and come back by themselves.
func fhirCluster(name string, f FHIRServer) *ir.Cluster {
	c := irCluster(name, []Endpoint{{Host: f.Host, Port: f.Port}}, false, orDefault(f.ConnectTimeout, defaultFHIRConnect))
	c.BufferLimitBytes = responseBufferLimitBytes
	c.Outlier = &ir.Outlier{
		ConsecutiveLocalFailures: 3,
		Interval:                 time.Second,
		BaseEjection:             5 * time.Second,
		MaxEjectionPercent:       100,
	}
	if t := f.TLS; t != nil {
		sni := t.ServerName
		if sni == "" {
			sni = f.Host
		}
		c.TLS = &ir.UpstreamTLS{ServerName: sni, CAFile: t.CAFile}
	}
	return c
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// cleanPrefix drops one trailing slash so "/patient-access/fhir/" and "/patient-access/fhir" mean the same
// API; anything stranger is left for the IR to refuse.
func cleanPrefix(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}
