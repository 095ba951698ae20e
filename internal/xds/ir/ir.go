// Package ir is the internal representation between fhirwall's configuration and Envoy's protos: what the
// data plane must do, in fhirwall's words, checked whole before any proto is built.
package ir

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Xds is everything fhirwall-xds pushes to one Envoy: the HTTP listener and the clusters its routes and
// filters name.
type Xds struct {
	Listener *HTTPListener
	Clusters []*Cluster
}

// SecretNames lists the SDS secrets the IR refers to; each must be built beside the listener.
func (x *Xds) SecretNames() []string {
	if x.Listener == nil || x.Listener.TLS == nil {
		return nil
	}
	return []string{x.Listener.TLS.SecretName}
}

// HTTPListener is the edge listener: path hygiene, header hygiene, the filter chain and the API routes.
type HTTPListener struct {
	Name    string
	Address string
	Port    uint32
	// StripRequestHeaderPrefix names the request headers only fhirwall may set; any the client sends are
	// removed before routing and before ext_authz, so the ones ext_authz adds afterwards survive.
	StripRequestHeaderPrefix string
	// BufferLimitBytes bounds what Envoy buffers per downstream connection, and so the largest response
	// body ext_proc can receive BUFFERED; a larger one is refused by Envoy, never passed on. 0: Envoy's default.
	BufferLimitBytes uint32
	// TLS, when set, terminates TLS at the listener; nil: plain HTTP (behind a TLS-terminating balancer).
	TLS      *ListenerTLS
	ExtAuthz *ExtAuthz
	// ExtProc sees every allowed exchange's headers; fhirwall-proxy writes the audit record there.
	ExtProc *ExtProc
	// GlobalRateLimit, when set, asks a rate limit service (envoyproxy/ratelimit) after the local rate limit
	// on every route with a RateLimit: the limit all Envoys and standalone proxies share.
	GlobalRateLimit *GlobalRateLimit
	// Tracing, when set, traces every request with Envoy's OpenTelemetry tracer; nil: no tracing.
	Tracing *Tracing
	// Routes are tried in order: exact paths (an API's discovery documents) before the API prefixes; every
	// other path is answered 404 by Envoy without asking ext_authz. ext_authz and ext_proc run on every route.
	Routes []*HTTPRoute
}

// HTTPRoute sends one API's FHIR base URL to the FHIR server, or one exact path below it (the API's
// CapabilityStatement, its SMART configuration) to fhirwall-proxy. Exactly one of PathPrefix and Path is set.
type HTTPRoute struct {
	// Name labels the route in stats and access logs: the API name, or the API name and the document.
	Name string
	// PathPrefix is the API's base path without trailing slash, matched on whole segments.
	PathPrefix string
	// Path is matched exactly (the query aside).
	Path string
	// RewritePrefix replaces PathPrefix upstream: the FHIR server's own base path. Empty: the path goes
	// upstream as the client sent it. Only prefix routes rewrite.
	RewritePrefix string
	// Forwarded, when set, is the API's public base as the FHIR server must write it in links (Bundle.link,
	// fullUrl, Location): sent upstream as literal x-forwarded-* headers, and every other header the server
	// would build its base from is removed. Never taken from the request: a client's Host or Forwarded
	// would point the links, and the token a client sends after them, elsewhere.
	Forwarded *Forwarded
	Cluster   string
	// Timeout bounds the whole upstream exchange; 0: Envoy's default (15 s).
	Timeout time.Duration
	// RateLimit, when set, applies the API's per-client limits to this route.
	RateLimit *RateLimit
	// CORS, when set, lets browser pages of the origins it admits read this route's answers.
	CORS *CORS
	// MaxRequestBytes, when set, replaces the listener's ext_authz body limit on this exact-path route (an
	// operation configured with a larger body); Envoy buffers up to it for ext_authz. At most the listener's
	// BufferLimitBytes.
	MaxRequestBytes uint32
}

// Forwarded is an API's public base split the way x-forwarded-proto, -host and -prefix carry it.
type Forwarded struct {
	Proto  string // http or https
	Host   string // host[:port] as apps write it; an IPv6 address in brackets
	Prefix string // the base's path: /-separated plain segments
}

// Validate checks what goes into the headers: Envoy reads '%' in a header value as a command operator, and
// the FHIR server trusts these values, so only a plain scheme, host[:port] and path pass.
func (f *Forwarded) Validate(route string) error {
	var errs []error
	if f.Proto != "http" && f.Proto != "https" {
		errs = append(errs, invalid("route %q: forwarded proto %q: want http or https", route, f.Proto))
	}
	if !validHostPort(f.Host) {
		errs = append(errs, invalid("route %q: forwarded host %q: want host[:port] (a DNS name or an IP address, IPv6 in brackets)", route, f.Host))
	}
	if !segmentsRE.MatchString(f.Prefix) || hasDotSegment(f.Prefix) {
		errs = append(errs, invalid("route %q: forwarded prefix %q must be /-separated plain segments", route, f.Prefix))
	}
	return errors.Join(errs...)
}

// validHostPort accepts the authority of a URL without user info: a DNS name, an IPv4 address or an IPv6
// address in brackets (no zone), with an optional port 1-65535.
func validHostPort(hp string) bool {
	host := hp
	if h, port, err := net.SplitHostPort(hp); err == nil {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port[0] == '0' {
			return false
		}
		host = h
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		return err == nil && a.Is6() && a.Zone() == ""
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Is4()
	}
	return len(host) <= 253 && hostnameRE.MatchString(host)
}

// match is the path the route matches, for messages.
func (r *HTTPRoute) match() string {
	if r.Path != "" {
		return r.Path
	}
	return r.PathPrefix
}

// ExtAuthz asks fhirwall-proxy about every request; it fails closed.
type ExtAuthz struct {
	Cluster         string
	Timeout         time.Duration
	StatusOnError   uint32
	MaxRequestBytes uint32
}

// ExtProc sends request and response headers of allowed requests to fhirwall-proxy; it fails closed.
type ExtProc struct {
	Cluster        string
	MessageTimeout time.Duration
	// MaxMessageTimeout is the longest fhirwall-proxy may extend one message's timeout to
	// (override_message_timeout), for the requests an adapter answers itself; 0: no extension.
	MaxMessageTimeout time.Duration
	// BufferResponseBody makes the filter's static mode send whole response bodies (BUFFERED) and lets
	// fhirwall-proxy override the mode per exchange (back to headers only when the decision needs no
	// enforcement). Fail-closed that way round: an override Envoy did not apply costs a body round trip,
	// never an unchecked body.
	BufferResponseBody bool
	// ForwardHeaders, when set, are the only headers (lower case) Envoy sends fhirwall-proxy's ext_proc
	// (forward_rules): the bearer token and every header it does not read stay in Envoy.
	ForwardHeaders []string
}

// Validate checks the ext_proc settings.
func (p *ExtProc) Validate() error {
	var errs []error
	if p.Cluster == "" {
		errs = append(errs, invalid("ext_proc has no cluster"))
	}
	if p.MessageTimeout < time.Millisecond || p.MessageTimeout > time.Minute {
		errs = append(errs, invalid("ext_proc message timeout %s outside [1ms, 1m]", p.MessageTimeout))
	}
	for _, h := range p.ForwardHeaders {
		if h == "" || h != strings.ToLower(h) {
			errs = append(errs, invalid("ext_proc forwarded header %q: want a lower-case name", h))
		}
	}
	if p.MaxMessageTimeout != 0 && (p.MaxMessageTimeout < p.MessageTimeout || p.MaxMessageTimeout > time.Minute) {
		errs = append(errs, invalid("ext_proc max message timeout %s outside [message timeout, 1m]", p.MaxMessageTimeout))
	}
	return errors.Join(errs...)
}

// Cluster is one upstream: the FHIR server, fhirwall-proxy's gRPC port, or its local HTTP listener.
type Cluster struct {
	Name string
	// Endpoints are the upstream's addresses: several fhirwall-proxy replicas, or one DNS name that resolves
	// to all of them (a Kubernetes headless Service). All IP addresses: a STATIC cluster, one endpoint each;
	// any DNS name: STRICT_DNS, every address each name resolves to.
	Endpoints      []Endpoint
	HTTP2          bool
	ConnectTimeout time.Duration
	// BufferLimitBytes is per_connection_buffer_limit_bytes for connections to this upstream; 0: Envoy's default.
	BufferLimitBytes uint32
	// MaxConnections, MaxPendingRequests and MaxRequests are the default-priority circuit breaker limits.
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	// TLS, when set, makes Envoy speak verified TLS to this upstream.
	TLS *UpstreamTLS
	// Outlier, when set, ejects a failing upstream host for a while so requests fail fast.
	Outlier *Outlier
	// HealthCheck, when set, has Envoy probe every endpoint with the gRPC health protocol and send nothing to
	// one that does not answer SERVING.
	HealthCheck *GRPCHealthCheck
}

// Endpoint is a host (IP address or DNS name) and a port.
type Endpoint struct {
	Host string
	Port uint32
}

// GRPCHealthCheck probes grpc.health.v1.Health/Check (the server's overall status) every Interval; a host is
// taken out after UnhealthyThreshold failed probes and back in after HealthyThreshold good ones.
type GRPCHealthCheck struct {
	Interval           time.Duration
	Timeout            time.Duration
	UnhealthyThreshold uint32
	HealthyThreshold   uint32
}

// Validate checks the health check of cluster.
func (h *GRPCHealthCheck) Validate(cluster string) error {
	var errs []error
	if h.Interval < 100*time.Millisecond || h.Timeout < time.Millisecond || h.Timeout > h.Interval {
		errs = append(errs, invalid("cluster %q: health check interval %s must be at least 100ms and timeout %s within it", cluster, h.Interval, h.Timeout))
	}
	if h.UnhealthyThreshold == 0 || h.HealthyThreshold == 0 {
		errs = append(errs, invalid("cluster %q: health check thresholds must be positive", cluster))
	}
	return errors.Join(errs...)
}

var (
	// ErrInvalid is wrapped by every validation error, so callers can tell bad config from other failures.
	ErrInvalid = errors.New("invalid xds ir")

	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`)
	// Path prefixes are plain segments: nothing Envoy would normalise, decode or treat as a pattern.
	segmentsRE = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)
	// An exact path may name an operation: a segment may begin with "$" ([base]/Group/$bulk-member-match).
	operationPathRE = regexp.MustCompile(`^(/\$?[A-Za-z0-9._~-]+)+$`)
	headerPrefixRE  = regexp.MustCompile(`^[a-z0-9-]+$`)
	hostnameRE      = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate reports every problem at once.
func (x *Xds) Validate() error {
	if x == nil {
		return invalid("no xds ir")
	}
	var errs []error
	clusters := map[string]bool{}
	for i, c := range x.Clusters {
		if c == nil {
			errs = append(errs, invalid("cluster %d is empty", i))
			continue
		}
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
		if clusters[c.Name] {
			errs = append(errs, invalid("cluster %q defined twice", c.Name))
		}
		clusters[c.Name] = true
	}
	if x.Listener == nil {
		return errors.Join(append(errs, invalid("no listener"))...)
	}
	if t := x.Listener.TLS; t != nil {
		if err := t.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := x.Listener.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, r := range x.Listener.Routes {
		if r != nil && r.Cluster != "" && !clusters[r.Cluster] {
			errs = append(errs, invalid("route %q: unknown cluster %q", r.Name, r.Cluster))
		}
	}
	if a := x.Listener.ExtAuthz; a != nil && a.Cluster != "" {
		errs = append(errs, x.grpcCluster("ext_authz", a.Cluster))
	}
	if p := x.Listener.ExtProc; p != nil && p.Cluster != "" {
		errs = append(errs, x.grpcCluster("ext_proc", p.Cluster))
	}
	if g := x.Listener.GlobalRateLimit; g != nil && g.Cluster != "" {
		errs = append(errs, x.grpcCluster("ratelimit", g.Cluster))
	}
	if t := x.Listener.Tracing; t != nil {
		errs = append(errs, t.Validate())
		if t.Cluster != "" {
			errs = append(errs, x.grpcCluster("tracing", t.Cluster))
		}
	}
	return errors.Join(errs...)
}

// grpcCluster checks that a filter's gRPC service names a defined cluster that speaks HTTP/2.
func (x *Xds) grpcCluster(filter, name string) error {
	for _, c := range x.Clusters {
		if c != nil && c.Name == name {
			if !c.HTTP2 {
				return invalid("%s: cluster %q must speak HTTP/2 (gRPC)", filter, name)
			}
			return nil
		}
	}
	return invalid("%s: unknown cluster %q", filter, name)
}

// Validate checks the listener and its routes.
func (l *HTTPListener) Validate() error {
	var errs []error
	if !nameRE.MatchString(l.Name) {
		errs = append(errs, invalid("listener name %q", l.Name))
	}
	if err := validateEndpoint("listener", l.Address, l.Port); err != nil {
		errs = append(errs, err)
	} else if !isIP(l.Address) {
		errs = append(errs, invalid("listener address %q must be an IP address", l.Address))
	}
	if p := l.StripRequestHeaderPrefix; p != "" && !headerPrefixRE.MatchString(p) {
		errs = append(errs, invalid("strip request header prefix %q must be a lower-case header name prefix", p))
	}
	if l.ExtAuthz == nil {
		// fhirwall never routes a request nobody decided on.
		errs = append(errs, invalid("listener %q has no ext_authz", l.Name))
	} else if err := l.ExtAuthz.Validate(); err != nil {
		errs = append(errs, err)
	}
	if l.ExtProc != nil && l.ExtProc.BufferResponseBody && l.BufferLimitBytes == 0 {
		// Envoy's default (1 MiB) would silently cap which answers can be enforced at all.
		errs = append(errs, invalid("listener %q buffers response bodies for ext_proc but sets no buffer limit", l.Name))
	}
	if l.ExtProc == nil {
		// Every allowed exchange is audited when its response passes ext_proc; without it nothing would be.
		errs = append(errs, invalid("listener %q has no ext_proc", l.Name))
	} else if err := l.ExtProc.Validate(); err != nil {
		errs = append(errs, err)
	}
	if l.GlobalRateLimit != nil {
		errs = append(errs, l.GlobalRateLimit.Validate())
	}
	if len(l.Routes) == 0 {
		errs = append(errs, invalid("listener %q has no routes", l.Name))
	}
	names := map[string]bool{}
	for i, r := range l.Routes {
		if r == nil {
			errs = append(errs, invalid("route %d is empty", i))
			continue
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
		if r.MaxRequestBytes > 0 && (l.BufferLimitBytes == 0 || r.MaxRequestBytes > l.BufferLimitBytes) {
			errs = append(errs, invalid("route %q: body limit %d above the listener's buffer limit %d", r.Name, r.MaxRequestBytes, l.BufferLimitBytes))
		}
		if names[r.Name] {
			errs = append(errs, invalid("route %q defined twice", r.Name))
		}
		names[r.Name] = true
		for _, o := range l.Routes[:i] {
			if o == nil {
				continue
			}
			switch {
			case o.PathPrefix != "" && r.PathPrefix != "" && (segmentPrefix(o.PathPrefix, r.PathPrefix) || segmentPrefix(r.PathPrefix, o.PathPrefix)),
				o.Path != "" && r.Path != "" && strings.EqualFold(o.Path, r.Path):
				errs = append(errs, invalid("routes %q (%s) and %q (%s) overlap", o.Name, o.match(), r.Name, r.match()))
			case o.PathPrefix != "" && r.Path != "" && segmentPrefix(o.PathPrefix, r.Path):
				// Envoy takes the first match: this exact route would never be reached.
				errs = append(errs, invalid("route %q (%s) is shadowed by the earlier prefix route %q (%s)", r.Name, r.Path, o.Name, o.PathPrefix))
			}
		}
	}
	return errors.Join(errs...)
}

// segmentPrefix reports whether p is q or a whole-segment prefix of q.
func segmentPrefix(p, q string) bool {
	return strings.EqualFold(p, q) || strings.HasPrefix(strings.ToLower(q), strings.ToLower(p)+"/")
}

// Validate checks one route.
func (r *HTTPRoute) Validate() error {
	var errs []error
	if !nameRE.MatchString(r.Name) {
		errs = append(errs, invalid("route name %q: lower-case letters, digits, '-' and '_'", r.Name))
	}
	switch {
	case r.Path != "" && r.PathPrefix != "":
		errs = append(errs, invalid("route %q has both a path and a path prefix", r.Name))
	case r.Path != "":
		if !operationPathRE.MatchString(r.Path) {
			errs = append(errs, invalid("route %q: path %q must be /-separated plain segments without trailing slash", r.Name, r.Path))
		} else if hasDotSegment(r.Path) {
			errs = append(errs, invalid("route %q: path %q has a dot segment", r.Name, r.Path))
		}
		if r.RewritePrefix != "" {
			errs = append(errs, invalid("route %q: an exact path route does not rewrite", r.Name))
		}
	default:
		if !segmentsRE.MatchString(r.PathPrefix) {
			errs = append(errs, invalid("route %q: path prefix %q must be /-separated plain segments without trailing slash", r.Name, r.PathPrefix))
		} else if hasDotSegment(r.PathPrefix) {
			errs = append(errs, invalid("route %q: path prefix %q has a dot segment", r.Name, r.PathPrefix))
		}
	}
	if r.RewritePrefix != "" && (!segmentsRE.MatchString(r.RewritePrefix) || hasDotSegment(r.RewritePrefix)) {
		errs = append(errs, invalid("route %q: rewrite prefix %q must be /-separated plain segments without trailing slash", r.Name, r.RewritePrefix))
	}
	switch {
	case r.Forwarded != nil:
		errs = append(errs, r.Forwarded.Validate(r.Name))
	case r.PathPrefix != "":
		// Without it the FHIR server builds its links from the Host header, which is the client's.
		errs = append(errs, invalid("route %q has no forwarded public base: the FHIR server would build its links from the client's Host", r.Name))
	}
	if r.Cluster == "" {
		errs = append(errs, invalid("route %q has no cluster", r.Name))
	}
	if r.MaxRequestBytes > 0 && r.Path == "" {
		errs = append(errs, invalid("route %q: a body limit of its own needs an exact path", r.Name))
	}
	if r.Timeout < 0 || r.Timeout > 10*time.Minute {
		errs = append(errs, invalid("route %q: timeout %s outside [0, 10m]", r.Name, r.Timeout))
	}
	if r.RateLimit != nil {
		errs = append(errs, r.RateLimit.Validate(r.Name))
	}
	if r.CORS != nil {
		errs = append(errs, r.CORS.Validate(r.Name))
	}
	return errors.Join(errs...)
}

func hasDotSegment(p string) bool {
	for _, s := range strings.Split(p, "/") {
		if s == "." || s == ".." {
			return true
		}
	}
	return false
}

// Validate checks the ext_authz settings.
func (a *ExtAuthz) Validate() error {
	var errs []error
	if a.Cluster == "" {
		errs = append(errs, invalid("ext_authz has no cluster"))
	}
	if a.Timeout < time.Millisecond || a.Timeout > time.Minute {
		errs = append(errs, invalid("ext_authz timeout %s outside [1ms, 1m]", a.Timeout))
	}
	if a.StatusOnError < 400 || a.StatusOnError > 599 {
		// A 2xx or 3xx here would let a request pass, or look like it did, when nobody decided on it.
		errs = append(errs, invalid("ext_authz status_on_error %d is not an error status", a.StatusOnError))
	}
	if a.MaxRequestBytes == 0 || a.MaxRequestBytes > 16<<20 {
		errs = append(errs, invalid("ext_authz max request bytes %d outside [1, 16 MiB]", a.MaxRequestBytes))
	}
	return errors.Join(errs...)
}

// Validate checks one cluster.
func (c *Cluster) Validate() error {
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, invalid("cluster name %q", c.Name))
	}
	if len(c.Endpoints) == 0 {
		errs = append(errs, invalid("cluster %q has no endpoints", c.Name))
	}
	seen := map[Endpoint]bool{}
	for _, e := range c.Endpoints {
		if err := validateEndpoint("cluster "+c.Name, e.Host, e.Port); err != nil {
			errs = append(errs, err)
		}
		if seen[e] {
			// Envoy would weigh that replica twice.
			errs = append(errs, invalid("cluster %q: endpoint %s:%d listed twice", c.Name, e.Host, e.Port))
		}
		seen[e] = true
	}
	if c.ConnectTimeout < time.Millisecond || c.ConnectTimeout > time.Minute {
		errs = append(errs, invalid("cluster %q connect timeout %s outside [1ms, 1m]", c.Name, c.ConnectTimeout))
	}
	if c.MaxConnections == 0 || c.MaxPendingRequests == 0 || c.MaxRequests == 0 {
		errs = append(errs, invalid("cluster %q circuit breaker limits must be positive", c.Name))
	}
	if c.TLS != nil {
		errs = append(errs, c.TLS.Validate(c.Name))
	}
	if c.Outlier != nil {
		errs = append(errs, c.Outlier.Validate(c.Name))
	}
	if c.HealthCheck != nil {
		errs = append(errs, c.HealthCheck.Validate(c.Name))
		if !c.HTTP2 {
			errs = append(errs, invalid("cluster %q: a gRPC health check needs HTTP/2", c.Name))
		}
	}
	return errors.Join(errs...)
}

// IsIP reports whether every endpoint's host is an IP address (STATIC) rather than a DNS name (STRICT_DNS).
func (c *Cluster) IsIP() bool {
	for _, e := range c.Endpoints {
		if !isIP(e.Host) {
			return false
		}
	}
	return true
}

// IsIP reports whether host is an IP address Envoy's socket_address takes (no IPv6 zone).
func IsIP(host string) bool { return isIP(host) }

// isIP accepts IP addresses without an IPv6 zone, which Envoy's socket_address does not take.
func isIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

func validateEndpoint(what, host string, port uint32) error {
	var errs []error
	if !isIP(host) && (len(host) > 253 || !hostnameRE.MatchString(host)) {
		errs = append(errs, invalid("%s: host %q is neither an IP address nor a DNS name", what, host))
	}
	if port == 0 || port > 65535 {
		errs = append(errs, invalid("%s: port %d outside [1, 65535]", what, port))
	}
	return errors.Join(errs...)
}

// Tracing has Envoy's OpenTelemetry tracer trace every request on the listener and export its spans over
// OTLP/gRPC to Cluster. Envoy's tracer continues the trace of a traceparent the request carries (and follows
// its sampled flag); with TrustIncoming off the listener removes traceparent and tracestate before the tracer
// sees them (early header mutation), and ignores x-client-trace-id, so every request starts a trace of its own.
type Tracing struct {
	Cluster     string
	ServiceName string
	// SamplingPercent of the traces Envoy starts are sampled (exported), 0 to 100.
	SamplingPercent float64
	TrustIncoming   bool
}

// Validate checks the tracing settings (the cluster is checked against the IR's clusters by Xds.Validate).
func (t *Tracing) Validate() error {
	var errs []error
	if t.Cluster == "" {
		errs = append(errs, invalid("tracing has no cluster"))
	}
	if !serviceNameRE.MatchString(t.ServiceName) {
		errs = append(errs, invalid("tracing service name %q: want 1-63 letters, digits, '.', '_' or '-'", t.ServiceName))
	}
	if !(t.SamplingPercent >= 0 && t.SamplingPercent <= 100) { // NaN fails too
		errs = append(errs, invalid("tracing sampling percent %v outside [0, 100]", t.SamplingPercent))
	}
	return errors.Join(errs...)
}

var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)
