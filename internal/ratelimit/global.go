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

// Descriptors are every descriptor a request of client (of tier) on api counts against, as Envoy's route
// actions produce them (internal/xds): the app's (api, tier, client), then, for a request with a subject, its
// user's (api, tier, client, user) with the subject as its digest (UserKey), never itself; (api, anonymous)
// without a client. Check asks about the user's first and the app's after, in two calls (see Check).
func Descriptors(api, client, tier, subject string) []*commonv3.RateLimitDescriptor {
	out := appDescriptors(api, client, tier)
	if u := userDescriptor(api, client, tier, subject); u != nil {
		out = append(out, u)
	}
	return out
}

func entry(k, v string) *commonv3.RateLimitDescriptor_Entry {
	return &commonv3.RateLimitDescriptor_Entry{Key: k, Value: v}
}

// appDescriptors are the app's counter, or the API's anonymous one without a client.
func appDescriptors(api, client, tier string) []*commonv3.RateLimitDescriptor {
	if client == "" {
		return []*commonv3.RateLimitDescriptor{{Entries: []*commonv3.RateLimitDescriptor_Entry{
			entry(DescriptorAPI, api), entry(DescriptorAnonymous, AnonymousValue)}}}
	}
	if tier == "" {
		tier = DefaultTier
	}
	return []*commonv3.RateLimitDescriptor{{Entries: []*commonv3.RateLimitDescriptor_Entry{
		entry(DescriptorAPI, api), entry(DescriptorTier, tier), entry(DescriptorClient, client)}}}
}

// userDescriptor is the user's counter of a request with a client and a subject; nil otherwise.
func userDescriptor(api, client, tier, subject string) *commonv3.RateLimitDescriptor {
	if client == "" || subject == "" {
		return nil
	}
	app := appDescriptors(api, client, tier)[0].Entries
	return &commonv3.RateLimitDescriptor{Entries: append(append([]*commonv3.RateLimitDescriptor_Entry{}, app...),
		entry(DescriptorUser, UserKey(subject)))}
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
	// PerUser reports whether a client of tier on api has a per-user rate (Limiter.HasUserRate); only then is
	// the user's counter asked about. nil: asked for every request with a subject (a counter the service has
	// no limit for answers OK).
	PerUser func(api, tier string) bool
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

// Check takes one hit from the request's user counter, when it has one, and then from its app's (Descriptors),
// in two calls as Envoy's two ratelimit filters make them: the service counts every descriptor of a call, so a
// member far over its own rate would otherwise use up the app's rate for its other members; asked first and
// refused, it never reaches the app's counter. ok false: a counter is over its limit, retry after retryAfter
// (whole seconds, at least 1). An error (wrapping ErrUnavailable) means no answer within the timeout (each
// call's) or an answer that is neither OK nor OVER_LIMIT: refuse the request.
func (g *Global) Check(ctx context.Context, api, client, tier, subject string) (ok bool, retryAfter time.Duration, err error) {
	if u := userDescriptor(api, client, tier, subject); u != nil && (g.PerUser == nil || g.PerUser(api, tier)) {
		if ok, wait, err := g.ask(ctx, []*commonv3.RateLimitDescriptor{u}); err != nil || !ok {
			return ok, wait, err
		}
	}
	return g.ask(ctx, appDescriptors(api, client, tier))
}

func (g *Global) ask(ctx context.Context, ds []*commonv3.RateLimitDescriptor) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp, err := g.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: g.domain, Descriptors: ds, HitsAddend: 1})
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
