//go:build e2e

package main

// The harness itself, briefly, on the real stack's Kafka and the cached Envoy: every system it measures must
// answer the benchmark request (the harness checks 200 before measuring) and hold a small constant rate
// without failures, so `make bench` cannot rot between the runs that produce BENCHMARKS.md.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// fakePeer is an ext_authz server that allows everything: it stands in for opa-envoy-plugin (which cannot
// be built here) to show the peer slot's wiring, not to be measured.
type fakePeer struct {
	authv3.UnimplementedAuthorizationServer
}

func (fakePeer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{Code: 0}}, nil
}

func TestHarnessMeasuresEverySystem(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", "..", ".."))
	if out, err := exec.Command("bash", filepath.Join(root, "test", "stack", "kafka.sh"), "topic", benchTopic, "3").CombinedOutput(); err != nil {
		t.Fatalf("kafka topic: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, fakePeer{})
	go gs.Serve(l)
	defer gs.Stop()
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./test/bench/load", "-duration", "1s", "-rates", "50", "-saturation-workers", "4",
		"-only", "bare,envoy,standalone,envoy-fhirwall,peer", "-out", out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PEER_AUTHZ_ADDR="+l.Addr().String())
	b, err := cmd.CombinedOutput()
	t.Logf("%s", b)
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := filepath.Glob(filepath.Join(out, "run-*", "results.json"))
	if len(runs) != 1 {
		t.Fatalf("want one results.json, found %v", runs)
	}
	raw, err := os.ReadFile(runs[0])
	if err != nil {
		t.Fatal(err)
	}
	var rs []result
	if err := json.Unmarshal(raw, &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 5 {
		t.Fatalf("want 5 systems measured, got %d", len(rs))
	}
	for _, r := range rs {
		if r.Saturation <= 0 || len(r.Rates) != 1 || r.Rates[0].Success < 1 || r.CPUPer1000 <= 0 || r.PeakRSS <= 0 {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
}
