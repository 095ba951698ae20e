package xds

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	cplog "github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Publisher puts snapshots for one Envoy node into a snapshot cache. Publishing the same content twice is a
// no-op, so a config file touched without change does not make Envoy reload anything.
type Publisher struct {
	cache  cache.SnapshotCache
	nodeID string
	log    *slog.Logger
	// build makes the snapshot (nil: NewSnapshot, Envoy's); typeURL is the type whose version names it.
	build   func(Config) (*cache.Snapshot, error)
	typeURL string

	mu      sync.Mutex
	version string
}

// NewPublisher returns a Publisher for the node whose bootstrap node.id is nodeID.
func NewPublisher(c cache.SnapshotCache, nodeID string, log *slog.Logger) *Publisher {
	return &Publisher{cache: c, nodeID: nodeID, log: log, build: NewSnapshot, typeURL: snapshotTypeURL}
}

// NewRateLimitPublisher returns a Publisher of the rate limit service's configuration (RateLimitSnapshot)
// for the service whose xDS node id is nodeID (xds.ratelimit_node_id): its limits follow the config file
// like Envoy's, without a restart.
func NewRateLimitPublisher(c cache.SnapshotCache, nodeID string, log *slog.Logger) *Publisher {
	return &Publisher{cache: c, nodeID: nodeID, log: log, build: RateLimitSnapshot, typeURL: resource.RateLimitConfigType}
}

// Publish builds the snapshot for cfg and hands it to the cache. On error the previous snapshot stays, so a
// broken config edit never takes the data plane down.
func (p *Publisher) Publish(ctx context.Context, cfg Config) (string, error) {
	snap, err := p.build(cfg)
	if err != nil {
		return "", err
	}
	version := snap.GetVersion(p.typeURL)
	p.mu.Lock()
	defer p.mu.Unlock()
	if version == p.version {
		p.log.DebugContext(ctx, "xds snapshot unchanged", "node", p.nodeID, "version", version)
		return version, nil
	}
	if err := p.cache.SetSnapshot(ctx, p.nodeID, snap); err != nil {
		return "", fmt.Errorf("set snapshot %s for %s: %w", version, p.nodeID, err)
	}
	p.log.InfoContext(ctx, "xds snapshot published", "node", p.nodeID, "version", version, "previous", p.version)
	p.version = version
	return version, nil
}

// Version is the content hash of the snapshot last published; empty before the first.
func (p *Publisher) Version() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.version
}

// HealthHandler serves /healthz (the process answers) and /readyz (a snapshot has been published, so an
// Envoy that connects gets a whole configuration), for probes.
func HealthHandler(p *Publisher) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		v := p.Version()
		if v == "" {
			http.Error(w, "not ready: no snapshot published", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintf(w, "ready version=%s\n", v)
	})
	return mux
}

// snapshotTypeURL is any type in the snapshot: all share the one content-hash version.
const snapshotTypeURL = "type.googleapis.com/envoy.config.listener.v3.Listener"

// NewGRPCServer returns a gRPC server serving ADS (and the single-type services, for debugging with
// other clients) from c. NACKs are logged: they are the only sign that Envoy refused what we sent.
func NewGRPCServer(ctx context.Context, c cache.Cache, log *slog.Logger) *grpc.Server {
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, typeURL string) error {
			log.Debug("xds stream open", "stream", id, "type", typeURL)
			return nil
		},
		StreamClosedFunc: func(id int64, node *corev3.Node) {
			log.Info("xds stream closed", "stream", id, "node", node.GetId())
		},
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			if st := req.GetErrorDetail(); st != nil {
				log.Warn("envoy rejected xds resources (NACK)", "stream", id, "node", req.GetNode().GetId(),
					"type", req.GetTypeUrl(), "version", req.GetVersionInfo(), "error", st.GetMessage())
			} else if req.GetVersionInfo() != "" {
				log.Debug("envoy acked xds resources", "stream", id, "type", req.GetTypeUrl(), "version", req.GetVersionInfo())
			}
			return nil
		},
	}
	srv := serverv3.NewServer(ctx, c, cb)
	g := grpc.NewServer(
		// Envoy keeps one long-lived ADS stream; keepalives notice a vanished Envoy.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, srv)
	routeservice.RegisterRouteDiscoveryServiceServer(g, srv)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, srv)
	return g
}

// CacheLogger adapts slog to go-control-plane's logger interface.
func CacheLogger(l *slog.Logger) cplog.Logger { return cacheLogger{l} }

type cacheLogger struct{ l *slog.Logger }

var _ cplog.Logger = cacheLogger{}

func (c cacheLogger) Debugf(f string, a ...any) { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Infof(f string, a ...any)  { c.l.Debug(fmt.Sprintf(f, a...)) } // chatty per-request logs
func (c cacheLogger) Warnf(f string, a ...any)  { c.l.Warn(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Errorf(f string, a ...any) { c.l.Error(fmt.Sprintf(f, a...)) }
