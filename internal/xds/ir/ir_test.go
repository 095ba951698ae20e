package ir

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validXds() *Xds {
	return &Xds{
		Listener: &HTTPListener{
			Name: "l", Address: "127.0.0.1", Port: 10000, StripRequestHeaderPrefix: "x-fhirwall-",
			ExtAuthz: &ExtAuthz{Cluster: "authz", Timeout: 500 * time.Millisecond, StatusOnError: 503, MaxRequestBytes: 65536},
			ExtProc:  &ExtProc{Cluster: "authz", MessageTimeout: 2 * time.Second},
			Routes: []*HTTPRoute{{Name: "patient-access", PathPrefix: "/patient-access/fhir", RewritePrefix: "/fhir", Cluster: "fhir",
				Forwarded: &Forwarded{Proto: "https", Host: "fhir.example.com", Prefix: "/patient-access/fhir"}}},
		},
		Clusters: []*Cluster{
			{Name: "fhir", Endpoints: []Endpoint{{Host: "127.0.0.1", Port: 8090}}, ConnectTimeout: time.Second, MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 1},
			{Name: "authz", Endpoints: []Endpoint{{Host: "127.0.0.1", Port: 9191}}, HTTP2: true, ConnectTimeout: time.Second, MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 1},
		},
	}
}

func TestIRRefusesWhatWouldFailOpenOrDangle(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Xds)
		want   string
	}{
		{"no ext_authz", func(x *Xds) { x.Listener.ExtAuthz = nil }, "has no ext_authz"},
		{"no ext_proc", func(x *Xds) { x.Listener.ExtProc = nil }, "has no ext_proc"},
		{"ext_proc to an unknown cluster", func(x *Xds) { x.Listener.ExtProc.Cluster = "nowhere" }, `ext_proc: unknown cluster`},
		{"ext_proc without timeout", func(x *Xds) { x.Listener.ExtProc.MessageTimeout = 0 }, "message timeout"},
		{"buffered response bodies without a buffer limit", func(x *Xds) { x.Listener.ExtProc.BufferResponseBody = true; x.Listener.BufferLimitBytes = 0 }, "no buffer limit"},
		{"status_on_error that lets a request look allowed", func(x *Xds) { x.Listener.ExtAuthz.StatusOnError = 200 }, "not an error status"},
		{"authz cluster without HTTP/2", func(x *Xds) { x.Clusters[1].HTTP2 = false }, "must speak HTTP/2"},
		{"route to an unknown cluster", func(x *Xds) { x.Listener.Routes[0].Cluster = "nowhere" }, `unknown cluster "nowhere"`},
		{"ext_authz to an unknown cluster", func(x *Xds) { x.Listener.ExtAuthz.Cluster = "nowhere" }, `ext_authz: unknown cluster`},
		{"duplicate cluster", func(x *Xds) { x.Clusters = append(x.Clusters, x.Clusters[0]) }, "defined twice"},
		{"no listener", func(x *Xds) { x.Listener = nil }, "no listener"},
		{"nil route", func(x *Xds) { x.Listener.Routes = append(x.Listener.Routes, nil) }, "route 1 is empty"},
		{"zero body limit", func(x *Xds) { x.Listener.ExtAuthz.MaxRequestBytes = 0 }, "max request bytes"},
		{"zero circuit breaker", func(x *Xds) { x.Clusters[0].MaxRequests = 0 }, "circuit breaker"},
		{"cluster without endpoints", func(x *Xds) { x.Clusters[1].Endpoints = nil }, "has no endpoints"},
		{"replica listed twice", func(x *Xds) { x.Clusters[1].Endpoints = append(x.Clusters[1].Endpoints, x.Clusters[1].Endpoints[0]) }, "listed twice"},
		{"one bad endpoint among good ones", func(x *Xds) {
			x.Clusters[1].Endpoints = append(x.Clusters[1].Endpoints, Endpoint{Host: "127.0.0.2", Port: 0})
		}, "port 0"},
		{"health check that never probes", func(x *Xds) {
			x.Clusters[1].HealthCheck = &GRPCHealthCheck{Interval: time.Second, Timeout: time.Second, UnhealthyThreshold: 0, HealthyThreshold: 1}
		}, "thresholds must be positive"},
		{"gRPC health check on an HTTP/1 cluster", func(x *Xds) {
			x.Clusters[0].HealthCheck = &GRPCHealthCheck{Interval: time.Second, Timeout: time.Second / 2, UnhealthyThreshold: 1, HealthyThreshold: 1}
		}, "needs HTTP/2"},
		{"tracing to an unknown cluster", func(x *Xds) {
			x.Listener.Tracing = &Tracing{Cluster: "nowhere", ServiceName: "envoy", SamplingPercent: 100}
		}, `tracing: unknown cluster "nowhere"`},
		{"tracing to an HTTP/1 cluster", func(x *Xds) {
			x.Listener.Tracing = &Tracing{Cluster: "fhir", ServiceName: "envoy", SamplingPercent: 100}
		}, "tracing: cluster \"fhir\" must speak HTTP/2"},
		{"tracing sampling above 100%", func(x *Xds) {
			x.Listener.Tracing = &Tracing{Cluster: "authz", ServiceName: "envoy", SamplingPercent: 101}
		}, "sampling percent"},
		{"tracing service name with a command operator", func(x *Xds) {
			x.Listener.Tracing = &Tracing{Cluster: "authz", ServiceName: "%REQ(authorization)%", SamplingPercent: 1}
		}, "tracing service name"},
		{"upper-case header prefix", func(x *Xds) { x.Listener.StripRequestHeaderPrefix = "X-Fhirwall-" }, "lower-case"},
		{"exact route after the prefix that swallows it", func(x *Xds) {
			x.Listener.Routes = append(x.Listener.Routes, &HTTPRoute{Name: "pa-metadata", Path: "/patient-access/fhir/metadata", Cluster: "fhir"})
		}, "shadowed by the earlier prefix route"},
		{"the same exact path twice", func(x *Xds) {
			r := &HTTPRoute{Name: "a", Path: "/x/metadata", Cluster: "fhir"}
			x.Listener.Routes = append([]*HTTPRoute{r, {Name: "b", Path: "/X/Metadata", Cluster: "fhir"}}, x.Listener.Routes...)
		}, "overlap"},
		{"route with a path and a prefix", func(x *Xds) { x.Listener.Routes[0].Path = "/patient-access/fhir/metadata" }, "both a path and a path prefix"},
		{"exact route that rewrites", func(x *Xds) {
			x.Listener.Routes = append([]*HTTPRoute{{Name: "m", Path: "/m/metadata", RewritePrefix: "/fhir", Cluster: "fhir"}}, x.Listener.Routes...)
		}, "does not rewrite"},
		{"FHIR server route that lets the client's Host build the links", func(x *Xds) { x.Listener.Routes[0].Forwarded = nil }, "no forwarded public base"},
		{"forwarded proto other than http(s)", func(x *Xds) { x.Listener.Routes[0].Forwarded.Proto = "%REQ(x-forwarded-proto)%" }, "forwarded proto"},
		{"forwarded host taken from the request", func(x *Xds) { x.Listener.Routes[0].Forwarded.Host = "%REQ(:authority)%" }, "forwarded host"},
		{"forwarded host with user info", func(x *Xds) { x.Listener.Routes[0].Forwarded.Host = "evil.example@fhir.example.com" }, "forwarded host"},
		{"forwarded host with a path", func(x *Xds) { x.Listener.Routes[0].Forwarded.Host = "fhir.example.com/x" }, "forwarded host"},
		{"forwarded host with port 0", func(x *Xds) { x.Listener.Routes[0].Forwarded.Host = "fhir.example.com:0" }, "forwarded host"},
		{"forwarded host with an IPv6 zone", func(x *Xds) { x.Listener.Routes[0].Forwarded.Host = "[fe80::1%25eth0]:443" }, "forwarded host"},
		{"forwarded host with a header break", func(x *Xds) { x.Listener.Routes[0].Forwarded.Host = "fhir.example.com\r\nx: y" }, "forwarded host"},
		{"empty forwarded host", func(x *Xds) { x.Listener.Routes[0].Forwarded.Host = "" }, "forwarded host"},
		{"forwarded prefix with an escape", func(x *Xds) { x.Listener.Routes[0].Forwarded.Prefix = "/a%2F/fhir" }, "forwarded prefix"},
		{"forwarded prefix that is not absolute", func(x *Xds) { x.Listener.Routes[0].Forwarded.Prefix = "//evil.example/fhir" }, "forwarded prefix"},
		{"per-user rate as fast as the client's, so a member could drain its app", func(x *Xds) {
			x.Listener.Routes[0].RateLimit = perUserLimit(Bucket{MaxTokens: 2, TokensPerFill: 10, FillInterval: time.Second})
		}, "per-user rate must be below"},
		{"per-user buckets without a bound on how many are kept", func(x *Xds) {
			x.Listener.Routes[0].RateLimit = perUserLimit(Bucket{MaxTokens: 2, TokensPerFill: 1, FillInterval: time.Second})
			x.Listener.Routes[0].RateLimit.MaxUsers = 0
		}, "keeps no user buckets"},
		{"user header the same as the client header", func(x *Xds) {
			x.Listener.Routes[0].RateLimit = perUserLimit(Bucket{MaxTokens: 2, TokensPerFill: 1, FillInterval: time.Second})
			x.Listener.Routes[0].RateLimit.UserHeader = "x-fhirwall-client"
		}, "three lower-case header names"},
		{"exact path with a dot segment", func(x *Xds) {
			x.Listener.Routes = append([]*HTTPRoute{{Name: "m", Path: "/m/../metadata", Cluster: "fhir"}}, x.Listener.Routes...)
		}, "dot segment"},
	}
	if err := validXds().Validate(); err != nil {
		t.Fatalf("baseline refused: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := validXds()
			tc.mutate(x)
			err := x.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want ErrInvalid mentioning %q, got %v", tc.want, err)
			}
		})
	}
}

func TestIRReportsEveryProblemAtOnce(t *testing.T) {
	x := validXds()
	x.Listener.Port = 0
	x.Clusters[0].Endpoints[0].Host = "not a host"
	x.Listener.Routes[0].PathPrefix = "/trailing/"
	err := x.Validate()
	for _, w := range []string{"port 0", "not a host", "/trailing/"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not mention %q", err, w)
		}
	}
}

func TestForwardedHostTakesWhatAnAbsoluteURLsAuthorityHolds(t *testing.T) {
	for _, host := range []string{"fhir.example.com", "fhir.example.com:8443", "127.0.0.1", "127.0.0.1:10000", "[::1]", "[::1]:10000", "localhost"} {
		f := &Forwarded{Proto: "https", Host: host, Prefix: "/patient-access/fhir"}
		if err := f.Validate("r"); err != nil {
			t.Errorf("%s refused: %v", host, err)
		}
	}
}

func TestClusterDiscoveryFollowsTheHostKind(t *testing.T) {
	for host, ip := range map[string]bool{"127.0.0.1": true, "::1": true, "hapi.fhir.svc": false, "localhost": false} {
		if got := (&Cluster{Endpoints: []Endpoint{{Host: host, Port: 1}}}).IsIP(); got != ip {
			t.Errorf("%s: IsIP %v", host, got)
		}
	}
	// One DNS name among addresses makes the whole cluster STRICT_DNS: Envoy resolves each endpoint.
	mixed := &Cluster{Endpoints: []Endpoint{{Host: "127.0.0.1", Port: 1}, {Host: "fhirwall-proxy", Port: 1}}}
	if mixed.IsIP() {
		t.Error("a cluster with a DNS name reads as all IP addresses")
	}
}

// perUserLimit is a route rate limit whose standard tier (10 a second for each client) also gives each
// user the bucket u.
func perUserLimit(u Bucket) *RateLimit {
	return &RateLimit{ClientHeader: "x-fhirwall-client", TierHeader: "x-fhirwall-rate-tier", UserHeader: "x-fhirwall-user",
		Anonymous:  Bucket{MaxTokens: 1, TokensPerFill: 1, FillInterval: time.Second},
		Tiers:      []TierLimit{{Tier: "standard", Bucket: Bucket{MaxTokens: 20, TokensPerFill: 10, FillInterval: time.Second}, PerUser: &u}},
		MaxClients: 10, MaxUsers: 10}
}

func TestPerUserRateLimitBelowTheClientsIsValid(t *testing.T) {
	x := validXds()
	x.Listener.Routes[0].RateLimit = perUserLimit(Bucket{MaxTokens: 5, TokensPerFill: 2, FillInterval: time.Second})
	if err := x.Validate(); err != nil {
		t.Fatal(err)
	}
}
