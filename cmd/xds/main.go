// Command fhirwall-xds is the xDS control plane: it turns fhirwall's configuration into Envoy listeners,
// routes and clusters and serves them over ADS, pushing a new snapshot whenever the config file changes.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/fhirwall/fhirwall/config"

	"github.com/fhirwall/fhirwall/internal/xds"
)

func main() {
	if err := run(); err != nil {
		slog.Error("fhirwall-xds stopped", "error", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", envOr("FHIRWALL_CONFIG", "config/fhirwall.yaml"), "config file (YAML); FHIRWALL_* variables override it")
	flag.Parse()

	c, err := config.LoadFor(*configPath, config.ForXDS)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "fhirwall-xds")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg, err := xdsConfig(c)
	if err != nil {
		return err
	}
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, xds.CacheLogger(logger))
	pub := xds.NewPublisher(snapshots, c.XDS.NodeID, logger)
	if _, err := pub.Publish(ctx, cfg); err != nil {
		return err
	}
	// The rate limit service's limits (rate_limits.global), under its own node id; empty when the global
	// limit is off. Published after Envoy's, so Envoy never asks about limits the service has not been sent
	// before it could have.
	rlPub := xds.NewRateLimitPublisher(snapshots, c.XDS.RateLimitNodeID, logger)
	if _, err := rlPub.Publish(ctx, cfg); err != nil {
		return err
	}

	// Reloads are serialised; a bad edit is logged and the running snapshot stays.
	var reload sync.Mutex
	err = config.WatchFor(*configPath, config.ForXDS, func(next *config.Config, err error) {
		reload.Lock()
		defer reload.Unlock()
		var nextCfg xds.Config
		if err == nil {
			nextCfg, err = xdsConfig(next)
		}
		if err == nil {
			if next.XDS.NodeID != c.XDS.NodeID || next.XDS.Listen != c.XDS.Listen || next.XDS.RateLimitNodeID != c.XDS.RateLimitNodeID {
				logger.Warn("xds.node_id, xds.ratelimit_node_id and xds.listen take effect only after a restart")
			}
			// The service's limits first: a tier Envoy is about to send descriptors for is then known there.
			if _, err = rlPub.Publish(ctx, nextCfg); err == nil {
				_, err = pub.Publish(ctx, nextCfg)
			}
		}
		if err != nil {
			logger.Error("config change refused, keeping the running snapshot", "file", *configPath, "error", err)
		}
	})
	if err != nil {
		return err
	}

	if c.XDS.Admin != "" {
		admin := &http.Server{Addr: c.XDS.Admin, Handler: xds.HealthHandler(pub), ReadHeaderTimeout: 5 * time.Second}
		adminLis, err := net.Listen("tcp", c.XDS.Admin)
		if err != nil {
			return err
		}
		go func() { _ = admin.Serve(adminLis) }()
		defer admin.Close()
	}
	lis, err := net.Listen("tcp", c.XDS.Listen)
	if err != nil {
		return err
	}
	srv := xds.NewGRPCServer(ctx, snapshots, logger)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	logger.Info("serving ADS", "listen", lis.Addr().String(), "node", c.XDS.NodeID, "config", *configPath)

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	// The cancelled context ends the ADS streams, so GracefulStop returns once they have closed; Stop is
	// the backstop for a stream that does not.
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		logger.Warn("ADS streams still open after 5s, closing them")
		srv.Stop()
	}
	logger.Info("stopped")
	if err := <-serveErr; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
