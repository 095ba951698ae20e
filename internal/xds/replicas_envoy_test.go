package xds

import (
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestADeadReplicaIsTakenOutOfTheAuthzCluster: with two fhirwall-proxy replicas behind one real Envoy, one
// that dies (its listener and connections gone at once, as after SIGKILL) costs at most the couple of
// requests that find it before the outlier detection ejects it; every request after those is decided by the
// other replica. Without ejection every other request would fail until the health check (2 s) caught up.
func TestADeadReplicaIsTakenOutOfTheAuthzCluster(t *testing.T) {
	second := grpc.NewServer()
	authv3.RegisterAuthorizationServer(second, fakeClientAuthz{})
	extprocv3.RegisterExternalProcessorServer(second, &fakeExtProc{})
	healthpb.RegisterHealthServer(second, health.NewServer())
	lis := listen(t)
	go second.Serve(lis)
	t.Cleanup(second.Stop)
	secondAddr := Endpoint{Host: "127.0.0.1", Port: port(lis)}

	e := startADSEnvoyWith(t, RateLimits{}, 0, 0, func(c *Config) {
		c.AuthzServices = []Endpoint{c.AuthzService, secondAddr}
	})
	// Both replicas healthy (the health check's first round) and serving.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ok := 0
		for range 10 {
			if a := e.get("/patient-access/fhir/Patient", ""); a.err == nil && a.status == 200 {
				ok++
			}
		}
		if ok == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two healthy replicas do not answer every request: %d of 10", ok)
		}
	}

	second.Stop()
	const n = 40
	failed, lastFailure := 0, -1
	for i := range n {
		a := e.get("/patient-access/fhir/Patient", "")
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.status != 200 {
			failed++
			lastFailure = i
			if a.status != 503 || a.retryAfter == "" {
				t.Errorf("request %d: %d (Retry-After %q) %s, want a fail-closed 503 with Retry-After", i, a.status, a.retryAfter, a.body)
			}
		}
	}
	t.Logf("after one of two replicas died: %d of %d requests failed, the last at %d", failed, n, lastFailure)
	if failed > int(authzEjectAfter) || lastFailure >= 2*int(authzEjectAfter) {
		t.Fatalf("%d of %d requests failed (the last at %d): the dead replica was not ejected after %d failures", failed, n, lastFailure, authzEjectAfter)
	}
}
