package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The global rate limit (rate_limits.global) is a rate limit service, envoyproxy/ratelimit counting in Redis,
// that every Envoy and every standalone proxy asks after its local limit, so N replicas hold a client to its
// tier once, not N times. Both modes send the same descriptors for a request (Envoy builds them from the
// headers ext_authz set, internal/xds; the standalone proxy from its decision, Global.Check) and fhirwall-xds
// serves the service the limits for them (internal/xds RateLimitConfig), so a client's requests through
// either mode count against the same counters.
//
// The descriptors of a request to API:
//
//	(fhirwall_api=API, fhirwall_tier=TIER, fhirwall_client=CLIENT)                        every client request
//	(fhirwall_api=API, fhirwall_tier=TIER, fhirwall_client=CLIENT, fhirwall_user=USERKEY) a token with a subject
//	(fhirwall_api=API, fhirwall_anonymous=true)                                           no client
//
// USERKEY is UserKey(subject), never the subject itself. The service counts each distinct value of a key its
// configuration gives no value for, so each client, and each user of a per-user tier, has its own counter.
const (
	DescriptorAPI       = "fhirwall_api"
	DescriptorTier      = "fhirwall_tier"
	DescriptorClient    = "fhirwall_client"
	DescriptorUser      = "fhirwall_user"
	DescriptorAnonymous = "fhirwall_anonymous"
	AnonymousValue      = "true"
	// UnavailableDiagnostics is the OperationOutcome diagnostics of the 503 both modes answer when the rate
	// limit service gave no answer.
	UnavailableDiagnostics = "The rate limit service is unavailable; the request was not processed."
	// DefaultDomain is the domain fhirwall's limits are kept under in the rate limit service.
	DefaultDomain = "fhirwall"
)

// Descriptors are the global rate limit descriptors of a request of client (of tier; "" for the default) and
// of the token's subject ("" for none) to api, exactly as Envoy's route actions produce them from the headers
// ext_authz sets.
func Descriptors(api, client, tier, subject string) []*commonv3.RateLimitDescriptor {
	entry := func(k, v string) *commonv3.RateLimitDescriptor_Entry {
		return &commonv3.RateLimitDescriptor_Entry{Key: k, Value: v}
	}
	if client == "" {
		return []*commonv3.RateLimitDescriptor{{Entries: []*commonv3.RateLimitDescriptor_Entry{
			entry(DescriptorAPI, api), entry(DescriptorAnonymous, AnonymousValue)}}}
	}
	if tier == "" {
		tier = DefaultTier
	}
	app := []*commonv3.RateLimitDescriptor_Entry{entry(DescriptorAPI, api), entry(DescriptorTier, tier), entry(DescriptorClient, client)}
	out := []*commonv3.RateLimitDescriptor{{Entries: app}}
	if subject != "" {
		user := append(append([]*commonv3.RateLimitDescriptor_Entry{}, app...), entry(DescriptorUser, UserKey(subject)))
		out = append(out, &commonv3.RateLimitDescriptor{Entries: user})
	}
	return out
}

// ErrUnavailable wraps every failure to get an answer from the rate limit service: the caller refuses the
// request (fail closed), as Envoy does with failure_mode_deny.
var ErrUnavailable = errors.New("rate limit service unavailable")

// Global asks the rate limit service (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) about a
// request the local limiter allowed.
type Global struct {
	client  rlsv3.RateLimitServiceClient
	conn    *grpc.ClientConn
	domain  string
	timeout time.Duration
}

// DialGlobal connects (lazily) to the rate limit service at address (host:port, plaintext gRPC: loopback or
// a mesh sidecar, as Envoy's own cluster to it). domain is the service's domain for fhirwall's limits;
// timeout bounds each call.
func DialGlobal(address, domain string, timeout time.Duration) (*Global, error) {
	if address == "" || domain == "" || timeout <= 0 {
		return nil, fmt.Errorf("ratelimit: global limiter needs an address, a domain and a timeout (got %q, %q, %s)", address, domain, timeout)
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("ratelimit: rate limit service %s: %w", address, err)
	}
	return &Global{client: rlsv3.NewRateLimitServiceClient(conn), conn: conn, domain: domain, timeout: timeout}, nil
}

// NewGlobal is a Global over client (tests hand it a fake service's client).
func NewGlobal(client rlsv3.RateLimitServiceClient, domain string, timeout time.Duration) *Global {
	return &Global{client: client, domain: domain, timeout: timeout}
}

// Close closes the connection DialGlobal opened.
func (g *Global) Close() error {
	if g.conn == nil {
		return nil
	}
	return g.conn.Close()
}

// Check takes one hit from every counter of the request (Descriptors). ok false: a counter is over its
// limit, retry after retryAfter (whole seconds, at least 1). An error (wrapping ErrUnavailable) means no
// answer within the timeout or an answer that is neither OK nor OVER_LIMIT: refuse the request.
func (g *Global) Check(ctx context.Context, api, client, tier, subject string) (ok bool, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp, err := g.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain:      g.domain,
		Descriptors: Descriptors(api, client, tier, subject),
		HitsAddend:  1,
	})
	if err != nil {
		return false, 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return verdict(resp)
}

// verdict reads the service's answer: OK allows; OVER_LIMIT refuses until the latest reset of an over-limit
// descriptor (whole seconds, at least 1); anything else is no answer (fail closed).
func verdict(resp *rlsv3.RateLimitResponse) (ok bool, retryAfter time.Duration, err error) {
	switch resp.GetOverallCode() {
	case rlsv3.RateLimitResponse_OK:
		return true, 0, nil
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		wait := time.Second
		for _, s := range resp.GetStatuses() {
			if s.GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT || s.GetDurationUntilReset() == nil {
				continue
			}
			// A reset beyond an hour is no reset a client should be told to wait for; a negative or invalid one
			// is none at all.
			if d := s.GetDurationUntilReset(); d.IsValid() {
				wait = max(wait, min(d.AsDuration(), maxRetryAfter))
			}
		}
		return false, time.Duration(math.Ceil(wait.Seconds())) * time.Second, nil
	default:
		return false, 0, fmt.Errorf("%w: answer %s", ErrUnavailable, resp.GetOverallCode())
	}
}

// maxRetryAfter bounds the Retry-After taken from the service's answer.
const maxRetryAfter = time.Hour
