// Command fhirwall-proxy serves Envoy's ext_authz and ext_proc gRPC APIs and, when configured, runs the
// same decisions as a standalone reverse proxy. It only wires; decisions live in internal/decision.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fhirwall/fhirwall/adapters/attribution"
	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
	"github.com/fhirwall/fhirwall/adapters/consent"
	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/adapters/jobstore"
	"github.com/fhirwall/fhirwall/adapters/payerexchange"
	"github.com/fhirwall/fhirwall/adapters/priorauth"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
	"github.com/fhirwall/fhirwall/adapters/registry/revocation"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/filters/authz"
	"github.com/fhirwall/fhirwall/filters/extproc"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/gateway"
	"github.com/fhirwall/fhirwall/internal/metrics"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/portal"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/seal"
	"github.com/fhirwall/fhirwall/internal/token"
	"github.com/fhirwall/fhirwall/internal/tracing"
	"github.com/fhirwall/fhirwall/policies"
)

func main() {
	cfgPath := flag.String("config", "", "path to fhirwall.yaml (FHIRWALL_* environment variables override it)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(*cfgPath, log); err != nil {
		fmt.Fprintln(os.Stderr, "fhirwall-proxy:", err)
		os.Exit(1)
	}
}

func run(cfgPath string, log *slog.Logger) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("GOGC"); !set && cfg.Proxy.GCPercent > 0 {
		debug.SetGCPercent(cfg.Proxy.GCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	p, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	// Audit: every record is fsync'd in the spool before its answer leaves; the shipper copies the spool to
	// Kafka behind it. A Kafka outage costs spool disk; a full spool refuses requests.
	shipCtx, stopShipping := context.WithCancel(context.WithoutCancel(ctx))
	shipped := make(chan error, 1)
	go func() { shipped <- p.shipper.Run(shipCtx) }()
	defer func() {
		// After the servers stopped: the stop checkpoint, then a few seconds for the shipper to catch up.
		// Whatever it does not ship stays in the spool and goes on the next start.
		if err := p.spool.Close(); err != nil {
			log.Error("audit spool close", "err", err)
		}
		select {
		case <-shipped:
		case <-time.After(5 * time.Second):
			log.Warn("audit shipper still behind at shutdown; the rest ships on the next start", "unshipped", p.spool.Stats().Durable-p.spool.Stats().Cursor)
		}
		stopShipping()
		p.shipper.Close()
	}()
	if cfg.Policies.Dir != "" {
		if err := p.engine.Watch(ctx, cfg.Policies.Dir, log); err != nil {
			return err
		}
	}
	if p.dryRun != nil {
		if err := p.dryRun.Watch(ctx, cfg.Policies.DryRunDir, log); err != nil {
			return err
		}
	}
	if p.priorAuth != nil {
		// Subscription handshakes, notifications and heartbeats, from the durable outbox.
		go func() {
			if err := p.priorAuth.subs.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("prior-auth notification worker stopped", "error", err)
			}
		}()
	}
	if err := p.watchRegistry(ctx); err != nil {
		return err
	}
	if p.revocations != nil {
		// Every replica's view of the revocation list follows each change within a second (LISTEN); one that
		// cannot refresh for 10 s refuses every token (503) rather than honour a revoked one.
		go func() {
			if err := p.revocations.View().Watch(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("revocation list watch stopped", "error", err)
			}
		}()
	}
	log.Info("starting", "policy_revision", p.engine.Revision(), "apis", len(p.apis), "fhir_server", p.upstream.Base())

	errc := make(chan error, 4)
	var servers []func(context.Context)
	if cfg.Proxy.GRPC != "" {
		// Stream workers: every Check and every ext_proc stream otherwise starts on a new goroutine whose stack
		// then grows to Rego's depth (runtime.newstack was 15% of the proxy's CPU at 500 rps in Envoy mode);
		// a pool as large as the in-flight bound keeps grown stacks, and a stream past it still gets its own.
		gs := grpc.NewServer(grpc.MaxRecvMsgSize(extproc.MaxRecvMsgSize),
			grpc.NumStreamWorkers(uint32(cfg.Proxy.InFlightLimit())))
		authv3.RegisterAuthorizationServer(gs, &authz.Server{Core: p.core, APIs: p.apis, Log: log, Tracer: p.tracer})
		extprocv3.RegisterExternalProcessorServer(gs, &extproc.Server{Core: p.core, DecisionHeader: authz.DecisionHeader, Log: log,
			AdapterTimeout: config.AdapterTimeout, Tracer: p.tracer})
		// grpc.health.v1 for Envoy's health check of the authz cluster: SERVING while /readyz would say ready,
		// NOT_SERVING from the moment shutdown starts, so Envoy stops sending before the listener closes.
		hs := health.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		go followReadiness(ctx, hs, p.readyChecks())
		lis, err := net.Listen("tcp", cfg.Proxy.GRPC)
		if err != nil {
			return err
		}
		go func() { errc <- gs.Serve(lis) }()
		servers = append(servers, func(context.Context) { hs.Shutdown(); gs.GracefulStop() })
		log.Info("ext_authz and ext_proc listening", "addr", cfg.Proxy.GRPC)
	}
	if p.gateway != nil {
		if cfgPath != "" {
			// Envoy gets rate-limit changes from fhirwall-xds; the standalone proxy reads them here.
			err := config.Watch(cfgPath, func(next *config.Config, err error) {
				if err != nil {
					log.Error("config change refused, keeping the running rate limits", "file", cfgPath, "error", err)
					return
				}
				p.limiter.Update(next.Limits())
				if next.RateLimits.Global != cfg.RateLimits.Global {
					log.Warn("rate_limits.global (address, domain, timeout) takes effect only after a restart; the running global limit is unchanged")
				}
				log.Info("rate limits reloaded", "file", cfgPath, "tiers", len(next.RateLimits.Tiers))
			})
			if err != nil {
				return err
			}
		}
		hs := &http.Server{Addr: cfg.Proxy.HTTP, Handler: p.gateway,
			ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
		servers = append(servers, serveHTTP(hs, errc))
		log.Info("standalone proxy listening", "addr", cfg.Proxy.HTTP)
	}
	if cfg.Proxy.Local != "" {
		// Envoy routes [prefix]/metadata and [prefix]/.well-known/smart-configuration here, after ext_authz.
		servers = append(servers, serveHTTP(&http.Server{Addr: cfg.Proxy.Local, Handler: p.docs, ReadHeaderTimeout: 5 * time.Second}, errc))
		log.Info("API documents listening", "addr", cfg.Proxy.Local)
	}
	if p.portal != nil {
		go p.portalStatus.Run(ctx)
		servers = append(servers, servePortal(cfg.Portal, p.portal, errc))
		log.Info("developer portal, DCR and token revocation listening", "addr", cfg.Portal.Listen, "url", cfg.Portal.PublicURL)
	}
	if cfg.Proxy.Admin != "" {
		servers = append(servers, serveHTTP(&http.Server{Addr: cfg.Proxy.Admin, Handler: p.admin(cfg, log), ReadHeaderTimeout: 5 * time.Second}, errc))
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		s(sctx)
	}
	return nil
}

// proxy is fhirwall-proxy wired from its configuration: every dependency built, nothing listening, watching
// or shipping yet (run starts those).
type proxy struct {
	upstream *fhirserver.Upstream
	core     *decision.Core
	apis     []decision.API
	engine   *policy.Engine
	dryRun   *policy.Engine // nil: no dry-run policy set
	// registry is the client registry (registry.source: the file, or the app registry in PostgreSQL);
	// watchRegistry keeps it fresh until ctx ends, returning once it started.
	registry      decision.Registry
	watchRegistry func(ctx context.Context) error
	// appsAdmin is the app registry's admin API (/admin/apps/); nil unless registry.source is postgres and
	// admin.token_file is set.
	appsAdmin http.Handler
	// appStore is the app registry in PostgreSQL (nil with the file registry): the admin API's, DCR's and the
	// portal's store.
	appStore *postgres.Store
	// portal is the developer portal, DCR and RFC 7009 revocation on portal.listen (nil: off); portalStatus
	// samples the metrics its status pages show.
	portal       http.Handler
	portalStatus *portal.Status
	// idp is the identity provider the registry is kept in sync with (registry.keycloak; nil: none).
	idp     apps.IdP
	docs    *capability.Handler
	reg     *prometheus.Registry
	spool   *audit.Spool
	shipper *kafka.Shipper
	// gateway is the standalone reverse proxy (proxy.http), nil when off; limiter is its rate limiter.
	gateway *gateway.Gateway
	limiter *ratelimit.Limiter
	// tracer traces requests through both faces (config tracing); off: a no-op.
	tracer *tracing.Tracer
	// priorAuth is the Prior Authorization API's adapter, its notification worker and admin API; nil when
	// that API is not configured.
	priorAuth *priorAuth
	// verifier checks tokens against the issuers; revocations (nil without jobs.postgres_dsn) is the list of
	// revoked tokens and grants every decision consults on top of it (portal.go).
	verifier    *token.Verifier
	revocations *revocation.Store
	closers     []func()
}

// build wires fhirwall-proxy from cfg. On error, whatever it opened is closed again.
func build(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *proxy, err error) {
	p := &proxy{}
	defer func() {
		if err != nil {
			if p.spool != nil {
				_ = p.spool.Close()
			}
			p.close()
		}
	}()
	if p.tracer, err = tracing.New(ctx, tracing.Settings{Endpoint: cfg.Tracing.Endpoint, ServiceName: cfg.Tracing.ServiceName,
		SamplingPercent: cfg.Tracing.SamplingPercent, TrustIncoming: cfg.Tracing.TrustIncoming}); err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() {
		// The spans still buffered, briefly: a collector that is down must not hold up the exit.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = p.tracer.Shutdown(sctx)
	})
	// One client of the FHIR server for the standalone proxy and every adapter (ARCHITECTURE Invariant 6).
	if p.upstream, err = fhirserver.Dial(fhirserver.Settings{URL: cfg.FHIRServer.URL, CAFile: cfg.FHIRServer.CAFile,
		ServerName: cfg.FHIRServer.ServerName, Timeout: cfg.FHIRServer.Timeout,
		ConnectTimeout: cfg.FHIRServer.ConnectTimeout, LookupTimeout: cfg.LookupTimeout()}); err != nil {
		return nil, fmt.Errorf("fhir_server: %w", err)
	}
	var issuers []token.IssuerConfig
	for _, is := range cfg.Issuers {
		ic := token.IssuerConfig{URL: is.URL, Audience: is.Audience, Algorithms: is.Algorithms}
		if in := is.Introspection; in != nil {
			ic.Introspection = &token.IntrospectionConfig{URL: in.URL, ClientID: in.ClientID, ClientSecret: in.ClientSecret}
		}
		issuers = append(issuers, ic)
	}
	cacheSize := cfg.Tokens.CacheSize
	if cacheSize == 0 {
		cacheSize = -1 // config's 0 means off; token's 0 means its default
	}
	verifier, err := token.NewVerifier(issuers, token.Options{ClockSkew: cfg.Tokens.ClockSkew,
		MinRefetchInterval: cfg.Tokens.MinRefetchInterval, CacheSize: cacheSize, Now: time.Now})
	if err != nil {
		return nil, err
	}
	var policyFS fs.FS = policies.FS
	if cfg.Policies.Dir != "" {
		policyFS = os.DirFS(cfg.Policies.Dir)
	}
	if p.engine, err = policy.New(ctx, policyFS, cfg.PolicyData()); err != nil {
		return nil, err
	}
	var dryRun decision.Policy
	if cfg.Policies.DryRunDir != "" {
		if p.dryRun, err = policy.New(ctx, os.DirFS(cfg.Policies.DryRunDir), cfg.PolicyData()); err != nil {
			return nil, fmt.Errorf("policies.dry_run_dir: %w", err)
		}
		dryRun = p.dryRun
		log.Warn("dry-run policy set loaded: disagreements are logged, never enforced", "dir", cfg.Policies.DryRunDir, "revision", p.dryRun.Revision())
	}
	p.reg = prometheus.NewRegistry()
	// The Go runtime's usual metrics, and its histogram of stop-the-world GC pauses
	// (go_sched_pauses_total_gc_seconds): the soak reports its p99, which no summary quantile gives.
	gcPauses := collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/pauses/total/gc:seconds$`)}
	if err := p.reg.Register(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(gcPauses))); err != nil {
		return nil, err
	}
	if err := p.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	m, err := metrics.New(p.reg)
	if err != nil {
		return nil, err
	}
	if err := cfg.Audit.CheckSpool(); err != nil {
		return nil, err
	}
	signer, err := audit.LoadSigningKey(cfg.Audit.SigningKeyFile)
	if err != nil {
		return nil, fmt.Errorf("audit.signing_key_file: %w", err)
	}
	sp := cfg.Audit.Spool
	if p.spool, err = audit.Open(sp.Dir, audit.Options{Key: signer, MaxBytes: sp.MaxBytes, SegmentBytes: sp.SegmentBytes,
		CheckpointEvery: sp.CheckpointEvery, CheckpointInterval: sp.CheckpointInterval, Log: log}); err != nil {
		return nil, err
	}
	p.shipper = kafka.NewShipper(p.spool, cfg.Audit.Kafka.Brokers, cfg.Audit.Kafka.Topic, kafka.Options{Log: log})
	// After the spool: the app registry in PostgreSQL audits every change into it, and so does the
	// revocation list.
	if err := p.buildRegistry(ctx, cfg, log); err != nil {
		return nil, err
	}
	p.verifier = verifier
	tokens, err := p.buildRevocation(ctx, cfg, verifier, log)
	if err != nil {
		return nil, err
	}
	var jobs decision.JobStore = decision.NewInMemoryJobs(0, nil)
	var pages decision.PageStore = &decision.InMemoryPages{}
	if cfg.Jobs.PostgresDSN != "" {
		pg, err := jobstore.Open(ctx, cfg.Jobs.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("jobs.postgres_dsn: %w", err)
		}
		p.closers = append(p.closers, pg.Close)
		jobs, pages = pg, pg.Pages()
	} else {
		log.Warn("bulk export jobs and paging links bound in memory (jobs.postgres_dsn is empty): one replica only; a restart forgets them")
	}
	base, lookups := p.upstream.Base(), p.upstream.Lookups
	compartment := fhirserver.New(base, lookups)
	attributed := attribution.New(base, p.upstream.Refreshes, attribution.Options{})
	consents := consent.New(base, p.upstream.Refreshes, consent.Options{})
	// Payer-to-Payer: the match operations and the opt-ins, read from the FHIR server on every request.
	payerLookups := fhirserver.NewSearcher("payer-exchange-lookups", base, lookups, 200)
	payerWrites := fhirserver.NewExchanger("payer-exchange", base, p.upstream.Refreshes)
	payerJobs := fhirserver.NewExchanger("payer-exchange-jobs", base, p.upstream.Jobs)
	payers, err := payerexchange.New(payerexchange.Ports{FHIR: payerWrites, Background: payerJobs, Search: payerLookups, Jobs: jobs}, log, time.Now)
	if err != nil {
		return nil, err
	}
	breakers := []metrics.Breaker{compartment.Breaker(), attributed.Breaker(), consents.Breaker(), payerLookups.Breaker(), payerWrites.Breaker(), payerJobs.Breaker()}
	spool, shipper := p.spool, p.shipper
	if err := m.WatchSpool(metrics.Spool{Stats: spool.Stats, Shipped: func() (uint64, uint64) {
		st := shipper.Stats()
		return st.Shipped, st.Failures
	}}); err != nil {
		return nil, err
	}
	publicBases := map[string]string{}
	for _, a := range cfg.APIs {
		p.apis = append(p.apis, decision.API{Name: a.Name, Prefix: a.Prefix, BodyLimits: a.BodyLimits()})
		publicBases[a.Name] = cfg.PublicURL + a.Prefix
	}
	adapters := map[string]decision.Adapter{payerexchange.Name: payers}
	// Prior Authorization: $submit, $inquire and Subscriptions answered by adapters/priorauth.
	if p.priorAuth, err = p.buildPriorAuth(ctx, cfg, m, &p.core, publicBases[config.PriorAuthAPI], log); err != nil {
		return nil, err
	}
	if p.priorAuth != nil {
		adapters[priorauth.Name] = p.priorAuth.adapter
		breakers = append(breakers, p.priorAuth.breakers...)
	}
	if err := m.WatchBreakers(breakers...); err != nil { // one collector: a second registration would clash
		return nil, err
	}
	// Envoy mode: the decision travels sealed from ext_authz to ext_proc, which may be another replica's.
	var carry *seal.Keyring
	if cfg.Proxy.GRPC != "" {
		if carry, err = seal.LoadKeyring(cfg.Proxy.DecisionKeysFile); err != nil {
			return nil, fmt.Errorf("proxy.decision_keys_file: %w", err)
		}
	}
	// Repeated request shapes skip the Rego; the dry-run candidate stays uncached (decision.CachedPolicy).
	enforced := decision.NewCachedPolicy(p.engine, decision.CacheOptions{Entries: cfg.Policies.DecisionCache.Entries,
		MaxBytes: cfg.Policies.DecisionCache.MaxBytes})
	if cached, ok := enforced.(*decision.CachedPolicy); ok {
		if err := m.WatchDecisionCache(cached.Stats); err != nil {
			return nil, err
		}
	}
	p.core = &decision.Core{
		Carry:       carry,
		Tokens:      tokens,
		Policy:      enforced,
		Compartment: compartment,
		Audit:       m.AuditSink(spool),
		Observer:    m,
		Log:         log,
		Now:         time.Now,
		DryRun:      dryRun,
		Registry:    p.registry,
		// Provider Access facts, read from the FHIR server's attribution Groups and Consents (cached, behind
		// breakers; an outage refuses requests, it never skips the check).
		Attribution: attributed,
		// Paging links bound to the client, patient and scopes whose search made them, and bulk export jobs and
		// their files bound to the client that started the job: in PostgreSQL when jobs.postgres_dsn is set
		// (every replica honours them; an outage refuses with 503), else in memory (one replica, standalone).
		Pages:   pages,
		Jobs:    jobs,
		Consent: consents,
		// Payer-to-Payer: opt-ins as facts, and the operations fhirwall answers itself.
		OptIns: payers,
		// The operations fhirwall answers itself: Payer-to-Payer matching, Prior Authorization.
		Adapters: adapters,
		// Links and bulk manifests name the API's public base, never the FHIR server's own address.
		UpstreamBase: base,
		PublicBase:   func(api string) string { return publicBases[api] },
		// Deprecation, Sunset and Link headers of the deprecations published for an API (notices:), on
		// every allowed answer in both modes.
		Notices: func(api, resourceType string, now time.Time) http.Header {
			return config.DeprecationHeaders(cfg.Notices, api, resourceType, now)
		},
	}
	// One document set per face: each names the base it is fetched from (Envoy's public_url, or the
	// standalone's proxy.public_url), never the request's Host. Both share one cache of the issuer's document.
	oidc := &capability.OIDCDiscovery{
		Client: &http.Client{Timeout: 2 * time.Second}, TTL: 5 * time.Minute, RetryAfter: 5 * time.Second, Now: time.Now,
	}
	docOpts := capability.Options{Date: time.Now().UTC().Format(time.DateOnly)}
	if cfg.Portal.Listen != "" {
		// Discovery names fhirwall's own revocation endpoint (so the gateway learns of each revocation) and,
		// with DCR on, its registration endpoint, both on the portal's listener.
		docOpts.PortalURL, docOpts.DCR = cfg.Portal.PublicURL, cfg.Portal.DCR.Enabled
	}
	if p.docs, err = capability.New(capabilityAPIs(cfg, cfg.PublicURL), oidc, docOpts, log); err != nil {
		return nil, err
	}
	if err := p.buildPortal(cfg, oidc, log); err != nil {
		return nil, err
	}
	if cfg.Proxy.HTTP != "" {
		public, err := url.Parse(cfg.Proxy.PublicURL) // validated by config
		if err != nil {
			return nil, fmt.Errorf("proxy.public_url: %w", err)
		}
		p.gateway = gateway.New(p.core, p.apis, p.upstream.URL, p.upstream.Transport, log)
		p.gateway.Public = public
		p.gateway.Tracer = p.tracer
		p.gateway.CORSOrigins = map[string][]string{}
		for _, a := range cfg.APIs {
			p.gateway.CORSOrigins[a.Name] = a.CORS.AllowedOrigins
		}
		if p.gateway.Local, err = capability.New(capabilityAPIs(cfg, cfg.Proxy.PublicURL), oidc, docOpts, log); err != nil {
			return nil, err
		}
		p.gateway.Metrics = m
		p.limiter = ratelimit.New(cfg.Limits(), time.Now)
		p.gateway.Limiter = p.limiter
		if g := cfg.RateLimits.Global; g.Enabled() {
			// The limit every replica shares (docs/rate-limits.md); its address is read at start only.
			global, err := ratelimit.DialGlobal(g.Address, g.Domain, g.Timeout)
			if err != nil {
				return nil, fmt.Errorf("rate_limits.global: %w", err)
			}
			p.closers = append(p.closers, func() { _ = global.Close() })
			global.PerUser = p.limiter.HasUserRate // the user's counter only where the tier has one, as Envoy's routes
			p.gateway.Global = global
		}
		p.gateway.LimitInFlight(cfg.Proxy.InFlightLimit(), cfg.Proxy.DecidingLimit())
	}
	return p, nil
}

// close closes what build opened that run does not close itself (the spool goes after the shipper).
func (p *proxy) close() {
	for _, c := range p.closers {
		c()
	}
	p.closers = nil
}

// readyChecks are what /readyz and the gRPC health service report on.
func (p *proxy) readyChecks() []metrics.Check {
	checks := []metrics.Check{
		{Name: "policy", Ready: func(context.Context) error {
			if p.engine.Revision() == "" {
				return errors.New("no policy set loaded")
			}
			return nil
		}},
		{Name: "audit spool", Ready: p.spool.Ready},
	}
	if r, ok := p.registry.(interface{ Ready(context.Context) error }); ok {
		// The app registry in PostgreSQL: a stale view refuses every authenticated request.
		checks = append(checks, metrics.Check{Name: "app registry", Ready: r.Ready})
	}
	if p.revocations != nil {
		checks = append(checks, metrics.Check{Name: "revocation list", Ready: p.revocations.View().Ready})
	}
	return checks
}

// followReadiness sets the gRPC health status from checks every second until ctx ends: a replica whose
// audit spool, registry view or revocation list is not ready is taken out of Envoy's balancing.
func followReadiness(ctx context.Context, hs *health.Server, checks []metrics.Check) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		status := healthpb.HealthCheckResponse_SERVING
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		for _, c := range checks {
			if c.Ready(cctx) != nil {
				status = healthpb.HealthCheckResponse_NOT_SERVING
				break
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		hs.SetServingStatus("", status)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// admin serves /healthz, /readyz, /metrics and, when asked, Go's profiles.
func (p *proxy) admin(cfg *config.Config, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", metrics.Readyz(time.Second,
		func() string { return "policy_revision=" + p.engine.Revision() }, p.readyChecks()...))
	mux.Handle("GET /metrics", metrics.Handler(p.reg))
	if p.appsAdmin != nil {
		// The app registry's admin API (bearer token from admin.token_file): registration and lifecycle.
		mux.Handle("/admin/apps/", p.appsAdmin)
	}
	if p.priorAuth != nil && p.priorAuth.admin != nil {
		// The reviewers' API (bearer token from prior_auth.admin_token_file): the pended queue and decisions.
		mux.Handle("/admin/prior-auth/", p.priorAuth.admin)
	}
	if cfg.Proxy.PProf {
		mux.HandleFunc("GET /debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
			// Block and mutex profiles are empty unless sampled; sampling (one event per 10 µs blocked, one
			// contended unlock in 10) starts with the first such profile asked for, so only then is it paid.
			switch r.URL.Path {
			case "/debug/pprof/block":
				runtime.SetBlockProfileRate(10_000)
			case "/debug/pprof/mutex":
				runtime.SetMutexProfileFraction(10)
			}
			pprof.Index(w, r)
		})
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		log.Warn("Go profiles served on the admin listener (proxy.pprof)", "addr", cfg.Proxy.Admin)
	}
	return mux
}

// idleTimeout closes a keep-alive connection idle this long. Without one, net/http keeps an idle connection
// for ever (it falls back to ReadTimeout, unset here: a body may take long), so clients that open connections
// and leave them — a load generator's every new client, or someone doing it on purpose — pile up goroutines
// and file descriptors without bound.
var idleTimeout = 90 * time.Second

// serveHTTP serves s (with idleTimeout unless it has its own) until the returned shutdown is called.
func serveHTTP(s *http.Server, errc chan<- error) func(context.Context) {
	if s.IdleTimeout == 0 {
		s.IdleTimeout = idleTimeout
	}
	go func() { errc <- s.ListenAndServe() }()
	return func(ctx context.Context) { _ = s.Shutdown(ctx) }
}

// capabilityAPIs maps each configured API onto what its CapabilityStatement and SMART configuration say,
// for the face whose public URL is publicURL.
func capabilityAPIs(cfg *config.Config, publicURL string) []capability.API {
	var out []capability.API
	for _, a := range cfg.APIs {
		api := capability.API{Name: a.Name, Prefix: a.Prefix, PublicBase: publicURL + a.Prefix, SMART: capability.SMART(a.SMART),
			Interactions: a.Interactions, Guides: a.Guides}
		if api.SMART.Issuer == "" && len(cfg.Issuers) > 0 {
			api.SMART.Issuer = cfg.Issuers[0].URL
		}
		for _, r := range a.Resources {
			api.Resources = append(api.Resources, capability.Resource(r))
		}
		for _, o := range a.Operations {
			api.Operations = append(api.Operations, capability.Operation{Type: o.Type, Name: o.Name, Definition: o.Definition})
		}
		out = append(out, api)
	}
	return out
}
