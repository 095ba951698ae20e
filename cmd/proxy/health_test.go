package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fhirwall/fhirwall/internal/metrics"
)

// TestGRPCHealthFollowsReadiness: Envoy's health check of the authz cluster reads this; a replica whose
// readiness check fails (its audit spool full, its registry view stale) must read NOT_SERVING, and SERVING
// again once it recovers.
func TestGRPCHealthFollowsReadiness(t *testing.T) {
	var broken atomic.Bool
	check := metrics.Check{Name: "audit spool", Ready: func(context.Context) error {
		if broken.Load() {
			return errors.New("spool full")
		}
		return nil
	}}
	hs := health.NewServer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go followReadiness(ctx, hs, []metrics.Check{check})
	waitFor := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			r, err := hs.Check(ctx, &healthpb.HealthCheckRequest{})
			if err == nil && r.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %v (%v), want %v", r.GetStatus(), err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(healthpb.HealthCheckResponse_SERVING)
	broken.Store(true)
	waitFor(healthpb.HealthCheckResponse_NOT_SERVING)
	broken.Store(false)
	waitFor(healthpb.HealthCheckResponse_SERVING)
}
