package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
)

// rate_limits.global.address set: the standalone gateway asks that service after its local limiter; and
// with nothing listening there, a limited request is refused, never served unlimited (fail closed).
func TestWiringGivesTheGatewayTheGlobalLimiter(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens: the service is down
	srv := newFHIRServer(t)
	cfg := wireConfig(t, srv.URL+"/fhir", srv.caFile, func(doc map[string]any, _ string) {
		doc["rate_limits"].(map[string]any)["global"] = map[string]any{"address": addr, "domain": "fhirwall", "timeout": "50ms"}
	})
	p, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.spool.Close()
		p.close()
	})
	if p.gateway.Global == nil {
		t.Fatal("rate_limits.global.address is set but the gateway has no global limiter")
	}
	ok, _, err := p.gateway.Global.Check(context.Background(), "patient-access", "app", "standard", "")
	if ok || err == nil {
		t.Fatalf("service down: ok %v err %v, want an error", ok, err)
	}
	off := wireConfig(t, srv.URL+"/fhir", srv.caFile, nil)
	q, err := build(context.Background(), off, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = q.spool.Close()
		q.close()
	})
	if q.gateway.Global != nil {
		t.Fatal("address empty, yet the gateway asks a global limiter")
	}
}
