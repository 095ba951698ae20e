// Package gateway is fhirwall's standalone face: a plain Go reverse proxy in front of the FHIR server that
// calls the same decision core in-process that Envoy reaches over ext_authz and ext_proc.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/cors"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/tracing"
)

// Gateway proxies the configured APIs to one FHIR server.
type Gateway struct {
	core     *decision.Core
	apis     []decision.API
	upstream *url.URL
	proxy    *httputil.ReverseProxy
	log      *slog.Logger
	// Enforce checks a whole upstream answer before it leaves; nil means Core.EnforceResponse. Tests put a
	// fake here to rewrite or refuse without depending on the enforcement rules.
	Enforce func(ctx context.Context, d *decision.Decision, status int, contentType string, body []byte) (decision.Enforced, error)
	// Public is where apps reach this proxy, without an API's prefix (proxy.public_url). The FHIR server
	// writes its links from it (X-Forwarded-Host/-Proto/-Prefix) and bulk-export manifests are rewritten to
	// it: never from the Host or Forwarded headers a client sent, or a client following a next link would
	// send its token wherever it named. Nil: no X-Forwarded-* at all, and the core's public base for
	// manifests (links then name the FHIR server itself unless the core rewrites them).
	Public *url.URL
	// Local, when set, answers the API documents fhirwall generates itself ([base]/metadata and
	// [base]/.well-known/smart-configuration, internal/capability) after the decision allowed them, instead of
	// the FHIR server. Nil: they are proxied like any other request.
	Local LocalHandler
	// Metrics is told of each whole request and each failed upstream exchange; nil tells nothing.
	Metrics Metrics
	// Limiter applies the per-client rate limits Envoy applies after ext_authz (internal/ratelimit); nil:
	// no limits.
	Limiter Limiter
	// Global, when set, is asked after Limiter allowed a request: the limit all replicas share
	// (rate_limits.global), as Envoy asks it after its local limit. nil: local limits only.
	Global GlobalLimiter
	// CORSOrigins gives, per API name, the browser origins that may read its data
	// (apis[].cors.allowed_origins); every origin may read the discovery documents (internal/cors).
	CORSOrigins map[string][]string
	// ResponseHeaders, when set, gives the headers added to the answer of every allowed request to api whose
	// path names resourceType (its first segment below the base; "" for none): the deprecation notices'
	// Deprecation, Sunset and Link (config.DeprecationHeaders), as Envoy's routes add them
	// (internal/xds API.ResponseHeaders). nil: none.
	ResponseHeaders func(api, resourceType string) http.Header
	// Tracer traces each request (its span, then the decision's, the FHIR server's answer, the response
	// check and the audit write below it); nil or off: no spans.
	Tracer *tracing.Tracer
	// inFlight bounds the requests worked on at once (LimitInFlight) once decided and within their rate;
	// deciding bounds those being decided. nil: no bound.
	inFlight, deciding chan struct{}
}

// bufferPool holds the 32 KiB buffers the reverse proxy copies answers through, reused across requests.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// LimitInFlight bounds the requests the gateway works on at once (proxy.max_in_flight). One more is refused
// at once, 503 with Retry-After (audited like every refusal), instead of queueing behind the others: under a
// bulk load the latency of the admitted requests stays bounded rather than every request timing out.
//
// The bound is taken after the decision and the rate limit, so a client over its own rate hears 429 (its
// own doing, which it can act on) before 503 (fhirwall's): with the bound first, a burst of one client was
// all 503s and never 429. Decisions still have a bound of their own, deciding, since deciding reads and
// holds the request body; it should be wider, as a decision is short and in memory.
func (g *Gateway) LimitInFlight(n, deciding int) {
	if n > 0 {
		g.inFlight = make(chan struct{}, n)
	}
	if deciding > 0 {
		g.deciding = make(chan struct{}, deciding)
	}
}

// Metrics is what the standalone face reports beyond the core's Observer (internal/metrics implements it).
type Metrics interface {
	Served(d *decision.Decision, took time.Duration)
	UpstreamFailed(d *decision.Decision, err error)
}

// Limiter takes a token from a client's bucket on an API and from its user's where the client's tier has
// one; refused, it says when to retry.
type Limiter interface {
	AllowUser(api, client, tier, user string) (ok bool, retryAfter time.Duration)
}

// GlobalLimiter is the rate limit service every replica asks (ratelimit.Global): ok false, the request is
// over a shared limit; an error, the service gave no answer and the request is refused.
type GlobalLimiter interface {
	Check(ctx context.Context, api, client, tier, subject string) (ok bool, retryAfter time.Duration, err error)
}

// rateLimiterUnavailable is the answer when the global limit's service gave none: the same 503 Envoy's local
// reply mapping gives (internal/xds), Retry-After included.
var rateLimiterUnavailable = outcome.Unavailable.WithDiagnostics(ratelimit.UnavailableDiagnostics)

// upstreamStatus is a 5xx answer of the FHIR server, as metrics classify it.
type upstreamStatus int

func (s upstreamStatus) Error() string   { return fmt.Sprintf("fhir server answered %d", int(s)) }
func (s upstreamStatus) StatusCode() int { return int(s) }

// LocalHandler is an http.Handler that knows which paths it answers (the full path, API prefix included).
type LocalHandler interface {
	http.Handler
	Match(path string) bool
}

// DecisionHeader returns the decision id on every answer, as Envoy mode does.
const DecisionHeader = "X-Fhirwall-Decision-Id"

type ctxKey struct{}

type exchange struct {
	d       *decision.Decision
	prefix  string
	started time.Time
}

// errAudit marks a response that was withheld because its audit record could not be written.
var errAudit = errors.New("audit record not durable")

// errUnchecked marks an upstream answer that needed enforcement and could not be enforced: too large,
// undecodable, or enforcement failed. The client gets decision.UncheckedResponse, never the body.
var errUnchecked = errors.New("upstream answer could not be checked")

// New returns the handler. upstream is the FHIR server's base URL, e.g. http://127.0.0.1:8090/fhir.
func New(core *decision.Core, apis []decision.API, upstream *url.URL, transport http.RoundTripper, log *slog.Logger) *Gateway {
	g := &Gateway{core: core, apis: apis, upstream: upstream, log: log}
	g.proxy = &httputil.ReverseProxy{
		Transport:  tracedTransport{next: transport},
		BufferPool: newBufferPool(),
		Rewrite:    g.rewrite,
		ModifyResponse: func(resp *http.Response) error {
			ex := resp.Request.Context().Value(ctxKey{}).(*exchange)
			resp.Header.Set(DecisionHeader, ex.d.ID)
			resp.Header.Del("X-Request-Id")             // ours is set already; the FHIR server's echo would repeat it
			for _, name := range cors.ResponseHeaders { // CORS is fhirwall's to say (cors, above)
				resp.Header.Del(name)
			}
			edit := decision.AnswerHeaders(ex.d, resp.StatusCode, resp.Header.Get)
			for _, name := range edit.Remove {
				resp.Header.Del(name)
			}
			for name, v := range edit.Set {
				resp.Header.Set(name, v)
			}
			if resp.StatusCode >= 500 && g.Metrics != nil {
				g.Metrics.UpstreamFailed(ex.d, upstreamStatus(resp.StatusCode))
			}
			// A bulk export kick-off's status URL is bound to its client before the client learns it.
			if err := g.core.BindExportJob(resp.Request.Context(), ex.d, resp.StatusCode, resp.Header.Get("Content-Location")); err != nil {
				return errors.Join(errUnchecked, err)
			}
			if ex.d.NeedsResponseBody() {
				return g.enforce(resp, ex)
			}
			if err := g.core.Record(resp.Request.Context(), ex.d, resp.StatusCode, resp.ContentLength, time.Since(ex.started)); err != nil {
				return errors.Join(errAudit, err)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			ex := r.Context().Value(ctxKey{}).(*exchange)
			w.Header().Set(DecisionHeader, ex.d.ID)
			if errors.Is(err, errAudit) {
				g.log.Error("audit write failed; refusing with 503", "decision_id", ex.d.ID, "error", err)
				outcome.Unavailable.Write(w)
				return
			}
			if errors.Is(err, errUnchecked) {
				g.log.Error("response enforcement failed; refusing with 502", "decision_id", ex.d.ID, "error", err)
				unchecked := decision.UncheckedResponse
				if rerr := g.core.Record(r.Context(), ex.d, unchecked.Status, int64(len(unchecked.Body())), time.Since(ex.started)); rerr != nil {
					g.log.Error("audit write failed", "decision_id", ex.d.ID, "error", rerr)
				}
				unchecked.Write(w)
				return
			}
			// The FHIR server is unreachable or broke the exchange: a 503 the client can retry, and its record.
			g.log.Error("upstream failed", "decision_id", ex.d.ID, "error", err)
			if g.Metrics != nil && r.Context().Err() == nil { // not when the client hung up
				g.Metrics.UpstreamFailed(ex.d, err)
			}
			if rerr := g.core.Record(r.Context(), ex.d, http.StatusServiceUnavailable, 0, time.Since(ex.started)); rerr != nil {
				g.log.Error("audit write failed", "decision_id", ex.d.ID, "error", rerr)
			}
			outcome.Unavailable.Write(w)
		},
	}
	return g
}

// enforce reads the whole upstream answer (at most decision.MaxResponseBytes, decoded), has it enforced,
// records it and replaces it with what may leave. Go's Transport has already decoded gzip when it asked for
// gzip itself (Content-Encoding is then gone); when the client asked, the body arrives encoded and is decoded here.
func (g *Gateway) enforce(resp *http.Response, ex *exchange) error {
	ctx := resp.Request.Context()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, decision.MaxResponseBytes+1))
	resp.Body.Close()
	if err != nil {
		return errors.Join(errUnchecked, err)
	}
	if len(raw) > decision.MaxResponseBytes {
		return errors.Join(errUnchecked, fmt.Errorf("upstream body larger than %d bytes", decision.MaxResponseBytes))
	}
	encoding := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	body, err := decision.DecodeBody(encoding, raw)
	if err != nil {
		return errors.Join(errUnchecked, err)
	}
	enforce := g.Enforce
	if enforce == nil {
		enforce = g.core.EnforceResponse
	}
	e, err := enforce(ctx, ex.d, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	if err != nil {
		return errors.Join(errUnchecked, err)
	}
	if err := g.core.RecordEnforced(ctx, ex.d, e, int64(len(e.Body)), time.Since(ex.started)); err != nil {
		return errors.Join(errAudit, err)
	}
	if e.Status != resp.StatusCode {
		// Enforcement's own answer (a refusal such as 404): nothing of the upstream's answer goes with it, not
		// even its headers (ETag, Location, Last-Modified would tell what was there).
		h := http.Header{}
		own := e.Header
		if own == nil {
			own = outcome.Internal.Headers()
		}
		for k, v := range own {
			h.Set(k, v)
		}
		h.Set(DecisionHeader, ex.d.ID)
		resp.Header = h
		resp.StatusCode, resp.Status = e.Status, fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	if encoding != "" && encoding != "identity" {
		resp.Header.Del("Content-Encoding")
	}
	resp.Body = io.NopCloser(bytes.NewReader(e.Body))
	resp.ContentLength = int64(len(e.Body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(e.Body)))
	resp.TransferEncoding = nil
	return nil
}

// ServeHTTP decides the request, then either refuses it or proxies it.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	if g.Tracer.On() {
		// A client's traceparent is followed only when config trusts it (FromClient).
		ctx, span := g.Tracer.StartServer(g.Tracer.FromClient(r.Context(), r.Header), tracing.SpanRequest)
		defer span.End()
		r = r.WithContext(ctx)
	}
	in := decision.Input{
		Mode:          decision.ModeStandalone,
		Method:        r.Method,
		RawQuery:      r.URL.RawQuery,
		Authorization: r.Header.Values("Authorization"),
		Header:        r.Header.Values,
		SourceIP:      sourceIP(r.RemoteAddr),
		RequestID:     audit.NewID(), // never taken from the client
	}
	// The id of this request's audit record, for the client to quote (Envoy mode: always_set_request_id_in_response).
	w.Header().Set("X-Request-Id", in.RequestID)
	if g.cors(w, r) {
		return
	}
	if !admit(g.deciding) {
		in.Path = r.URL.EscapedPath()
		d := g.core.Refuse(in, overloaded, "overloaded")
		if g.Metrics != nil {
			defer func() { g.Metrics.Served(d, time.Since(started)) }()
		}
		g.refuse(w, r, d, d.Refusal, map[string]string{"Retry-After": "1"})
		return
	}
	d, api := g.decide(r, in)
	if g.Metrics != nil {
		defer func() { g.Metrics.Served(d, time.Since(started)) }()
	}
	if !d.Allow {
		release(g.deciding)
		g.refuse(w, r, d, d.Refusal, nil)
		return
	}
	if g.Limiter != nil || g.Global != nil {
		// After the decision, as in Envoy (local rate limit after ext_authz): only allowed requests count,
		// and the buckets are the client's the token names and its subject's.
		var client, tier, user string
		if c := d.Client; c != nil {
			client, tier = c.ID, c.Tier
		}
		if id := d.Identity; id != nil {
			user = id.Subject
		}
		if g.Limiter != nil {
			if ok, wait := g.Limiter.AllowUser(d.Input.API, client, tier, user); !ok {
				release(g.deciding)
				g.refuseRateLimited(w, r, d, wait)
				return
			}
		}
		// Then the limit all replicas share, as Envoy asks the rate limit service after its local limit.
		if g.Global != nil {
			ok, wait, err := g.Global.Check(r.Context(), d.Input.API, client, tier, user)
			if err != nil {
				// Fail closed, as Envoy with failure_mode_deny: a limit that lets everything through while
				// its service is down is no limit. The audit record says why.
				release(g.deciding)
				g.log.Warn("rate limit service gave no answer; refusing with 503", "decision_id", d.ID, "error", err)
				d.Reasons = append(d.Reasons, "rate_limiter_unavailable")
				g.refuse(w, r, d, rateLimiterUnavailable, nil)
				return
			}
			if !ok {
				release(g.deciding)
				g.refuseRateLimited(w, r, d, wait)
				return
			}
		}
	}
	release(g.deciding)
	if !admit(g.inFlight) {
		// Allowed and within its rate: the audit record keeps the decision and says why it was not served.
		d.Reasons = append(d.Reasons, "overloaded")
		g.refuse(w, r, d, overloaded, map[string]string{"Retry-After": "1"})
		return
	}
	defer release(g.inFlight)
	if g.ResponseHeaders != nil {
		for name, v := range g.ResponseHeaders(d.Input.API, pathType(d.Input.Path)) {
			w.Header()[name] = v
		}
	}
	// The body was read to decide on it; the FHIR server gets exactly the bytes that were decided on.
	r.Body = io.NopCloser(bytes.NewReader(d.Input.Body))
	r.ContentLength = int64(len(d.Input.Body))
	if d.AnsweredHere() {
		g.serveAdapter(w, r, d)
		return
	}
	if g.Local != nil && g.Local.Match(api.Prefix+d.Input.Path) {
		g.serveLocal(w, r, d)
		return
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, &exchange{d: d, prefix: api.Prefix, started: time.Now()})
	g.proxy.ServeHTTP(w, r.WithContext(ctx))
}

var overloaded = outcome.Unavailable.WithDiagnostics("fhirwall is at capacity; retry after the time in Retry-After.")

// admit takes a slot of bound at once, or reports that there is none; a nil bound always admits.
func admit(bound chan struct{}) bool {
	if bound == nil {
		return true
	}
	select {
	case bound <- struct{}{}:
		return true
	default:
		return false
	}
}

func release(bound chan struct{}) {
	if bound != nil {
		<-bound
	}
}

// cors applies the CORS policy of the API the path names, as Envoy's CORS filter does before ext_authz: a
// preflight is answered here (true: nothing more to do), without a token, a decision, an audit record (it
// carries no data and reads none) or the FHIR server; any other request with Origin gets the headers on
// whatever answers it, refusals included. A path no API serves gets nothing, as from Envoy.
func (g *Gateway) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	path, err := normalizePath(r.URL.EscapedPath())
	if err != nil {
		return false
	}
	api, rest, err := decision.Route(g.apis, path)
	if err != nil {
		return false
	}
	p := cors.ForPath(g.CORSOrigins[api.Name], rest)
	if cors.IsPreflight(r) {
		p.Preflight(w, r)
		return true
	}
	p.Actual(w.Header(), origin)
	return false
}

// refuseRateLimited answers 429 with Retry-After, audited like the 429 Envoy's local rate limit gives (the
// decision allowed the request; the limit stopped it).
// The metrics count it from the record (an allowed decision answered 429), as they do Envoy's.
func (g *Gateway) refuseRateLimited(w http.ResponseWriter, r *http.Request, d *decision.Decision, wait time.Duration) {
	g.refuse(w, r, d, outcome.RateLimited,
		map[string]string{"Retry-After": strconv.Itoa(int(wait / time.Second))})
}

// refuse writes d's audit record with ref's status, then sends ref (and headers). If the record cannot be
// made durable the client gets 503 instead: fhirwall never answers without an audit record.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, d *decision.Decision, ref outcome.Refusal, headers map[string]string) {
	if err := g.core.Record(r.Context(), d, ref.Status, int64(len(ref.Body())), 0); err != nil {
		g.log.Error("audit write failed; refusing with 503", "decision_id", d.ID, "error", err)
		ref, headers = outcome.Unavailable, nil
	}
	for k, v := range ref.Headers() {
		w.Header().Set(k, v)
	}
	// The caller's headers win: a Retry-After it knows (the bucket's wait, 1 s at capacity) beats the default.
	for k, v := range headers {
		w.Header().Set(k, v)
	}
	w.Header().Set(DecisionHeader, d.ID)
	w.WriteHeader(ref.Status)
	_, _ = w.Write(ref.Body())
}

// decide does what Envoy does before ext_authz (normalise the path, bound the body) and then asks the core.
func (g *Gateway) decide(r *http.Request, in decision.Input) (*decision.Decision, decision.API) {
	path, err := normalizePath(r.URL.EscapedPath())
	if err != nil {
		in.Path = r.URL.EscapedPath()
		return g.core.Refuse(in, outcome.NotSupported.WithDiagnostics("escaped slashes are not allowed in paths"), "escaped_slash"), decision.API{}
	}
	api, rest, routeErr := decision.Route(g.apis, path)
	limit := fhir.MaxBodyBytes
	if routeErr == nil {
		limit = api.BodyLimit(rest)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil || len(body) > limit {
		in.Path = path
		return g.core.Refuse(in, outcome.TooLarge, "request_too_large"), decision.API{}
	}
	in.Body = body
	if routeErr != nil {
		in.Path = path
		return g.core.Refuse(in, outcome.NotFound, "no_api"), api
	}
	in.API, in.Path, in.BodyLimit = api.Name, rest, limit
	// The configured base, which is also what the FHIR server builds its links from (rewrite).
	in.PublicBase = g.publicBase(api.Prefix)
	return g.core.Decide(r.Context(), in), api
}

// publicBase is the API's public base, e.g. https://fhir.payer.example/patient-access/fhir; "" without Public.
func (g *Gateway) publicBase(prefix string) string {
	if g.Public == nil {
		return ""
	}
	return g.Public.Scheme + "://" + g.Public.Host + g.publicPrefix(prefix)
}

// publicPrefix is the path of the API's public base: Public's own path, then the API's prefix.
func (g *Gateway) publicPrefix(prefix string) string {
	return strings.TrimSuffix(g.Public.EscapedPath(), "/") + prefix
}

// serveLocal answers a decided request from fhirwall's own documents; like a proxied answer, it is only
// sent once its audit record is durable.
func (g *Gateway) serveLocal(w http.ResponseWriter, r *http.Request, d *decision.Decision) {
	started := time.Now()
	rec := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
	g.Local.ServeHTTP(rec, r)
	g.writeOwn(w, d, decision.Answer{Status: rec.code, Header: rec.header, Body: rec.body.Bytes()}, func() error {
		return g.core.Record(r.Context(), d, rec.code, int64(rec.body.Len()), time.Since(started))
	})
}

// serveAdapter answers a request an adapter serves itself (decision.Adapter), once its record is durable.
func (g *Gateway) serveAdapter(w http.ResponseWriter, r *http.Request, d *decision.Decision) {
	started := time.Now()
	a := g.core.Answer(r.Context(), d)
	g.writeOwn(w, d, a, func() error { return g.core.RecordAnswer(r.Context(), d, a, time.Since(started)) })
}

// writeOwn sends an answer fhirwall made itself once record made its audit record durable; a record that
// could not be written sends 503 instead.
func (g *Gateway) writeOwn(w http.ResponseWriter, d *decision.Decision, a decision.Answer, record func() error) {
	w.Header().Set(DecisionHeader, d.ID)
	if err := record(); err != nil {
		g.log.Error("audit write failed; refusing with 503", "decision_id", d.ID, "error", err)
		outcome.Unavailable.Write(w)
		return
	}
	for k, v := range a.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

// bufferedResponse holds a local answer (a few KiB) until its audit record is written.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(code int)        { b.code = code }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(ctxKey{}).(*exchange)
	out := pr.Out
	out.URL.Scheme, out.URL.Host = g.upstream.Scheme, g.upstream.Host
	out.URL.Path = strings.TrimSuffix(g.upstream.Path, "/") + ex.d.Input.Path
	out.URL.RawPath = ""
	out.URL.RawQuery = ex.d.UpstreamQuery
	out.Host = g.upstream.Host
	// Only fhirwall speaks for itself to the FHIR server: nothing a client sent under these names passes.
	for name := range out.Header {
		l := strings.ToLower(name)
		if strings.HasPrefix(l, "x-fhirwall-") || strings.HasPrefix(l, "x-forwarded-") || l == "forwarded" ||
			strings.HasPrefix(l, "x-envoy-") || l == "x-http-method-override" {
			out.Header.Del(name)
		}
	}
	// Invariant 3: conditional headers are judged by the core once the resource is known to be visible; the
	// FHIR server would answer 304 about a resource the caller may not see.
	for _, name := range decision.ConditionalHeaders {
		out.Header.Del(name)
	}
	if a := ex.d.UpstreamAccept; a != "" {
		out.Header.Set("Accept", a)
	}
	out.Header.Set("X-Request-Id", ex.d.Input.RequestID)
	// The FHIR server builds its links from these: the API's configured public base, not its own address and
	// never the Host the client sent (Envoy mode sends the same, literal, from public_url).
	if g.Public != nil {
		out.Header.Set("X-Forwarded-Host", g.Public.Host)
		out.Header.Set("X-Forwarded-Proto", g.Public.Scheme)
		out.Header.Set("X-Forwarded-Prefix", g.publicPrefix(ex.prefix))
	}
	// The token is for fhirwall; the FHIR server behind it trusts fhirwall's network position, not the app.
	out.Header.Del("Authorization")
	out.Header.Del("Cookie")
}

// tracedTransport is the upstream span: from sending the request to the FHIR server until its answer's
// headers arrived. The FHIR server is told the span's trace context instead of any the client sent.
type tracedTransport struct{ next http.RoundTripper }

func (t tracedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := tracing.Start(req.Context(), tracing.SpanUpstream)
	if !span.SpanContext().IsValid() { // tracing off
		return t.next.RoundTrip(req)
	}
	if ex, ok := req.Context().Value(ctxKey{}).(*exchange); ok {
		span.SetAttributes(tracing.AttrAPI.String(ex.d.Input.API))
	}
	// The outgoing request is the reverse proxy's own copy; its context stays the request's, so what runs
	// after the answer (response check, audit write) is not a child of this span.
	tracing.Inject(ctx, req.Header)
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		span.SetAttributes(tracing.AttrStatus.Int(resp.StatusCode))
	}
	tracing.End(span, err)
	return resp, err
}

func sourceIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// pathType is the first segment of a path below an API's base: the resource type an Envoy route of its own
// ([base]/[type], path-separated) would match, so both faces add the same headers to the same requests.
func pathType(path string) string {
	first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return first
}
