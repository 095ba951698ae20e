//go:build e2e

package replicas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

const (
	loadFor        = 10 * time.Second
	killAt         = 3 * time.Second
	clientsPerFace = 2
	killed         = 2 // the replica SIGKILLed
)

// loadCounts is what the clients of one mode saw.
type loadCounts struct {
	// limited are 429s: each replica (standalone) or Envoy counts the member's rate on its own; a refusal
	// that says so is an answer, not a failure.
	ok, limited, other, fivexx atomic.Int64
	// lost are requests that were under way on the killed replica and got no answer (connection reset).
	lost atomic.Int64
	// okAfterKill are answers 2xx sent after the kill: the others carried on.
	okAfterKill atomic.Int64
	byStatus    sync.Map // int → *atomic.Int64
}

func (c *loadCounts) String() string {
	var parts []string
	c.byStatus.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%v:%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	return fmt.Sprintf("ok %d (after the kill %d), 429 %d, 5xx %d, lost in flight %d, other %d; by status %v",
		c.ok.Load(), c.okAfterKill.Load(), c.limited.Load(), c.fivexx.Load(), c.lost.Load(), c.other.Load(), parts)
}

// refused reports a connection that was never made: a balancer tries the next replica, as Envoy does for
// its own connect failures.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TestReplicaKilledUnderLoad: a few clients per face keep a member's requests going for 10 s; at 3 s one
// replica is SIGKILLed. At most the requests in flight at that instant may fail (bounded by the
// concurrency); everything else is answered by the others. The replica restarts, becomes ready and serves
// again. Its answered requests' audit records are checked with everyone's in TestAudit... below.
func TestReplicaKilledUnderLoad(t *testing.T) {
	evidence.Proves(t, "OPS-REPLICA-01")
	setup(t)
	token := memberToken(t)
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			counts := &loadCounts{}
			concurrency := clientsPerFace * len(m.faces)
			ctx, cancel := context.WithTimeout(context.Background(), loadFor)
			defer cancel()
			var killedAt atomic.Pointer[time.Time]
			var wg sync.WaitGroup
			for c := range concurrency {
				wg.Go(func() { load(ctx, t, m, c, token, counts, &killedAt) })
			}
			time.Sleep(killAt)
			if out, err := script("kill", fmt.Sprint(killed)); err != nil {
				t.Fatalf("replicas.sh kill %d: %v\n%s", killed, err, out)
			}
			now := time.Now()
			killedAt.Store(&now)
			wg.Wait()
			t.Logf("%s, %d clients, replica %d SIGKILLed at %s: %s", m.name, concurrency, killed, killAt, counts)

			if failed := counts.fivexx.Load() + counts.lost.Load(); failed > int64(concurrency) {
				t.Errorf("%d answers 5xx or lost; at most the %d requests in flight at the kill may fail", failed, concurrency)
			}
			if counts.okAfterKill.Load() == 0 {
				t.Errorf("nothing answered after the kill: %s", counts)
			}
			if counts.other.Load() > 0 {
				t.Errorf("answers other than 200, 429 and 5xx: %s", counts)
			}

			if out, err := script("start-one", fmt.Sprint(killed)); err != nil {
				t.Fatalf("replicas.sh start-one %d: %v\n%s", killed, err, out)
			}
			rejoins(t, m, token)
		})
	}
}

// load sends requests until ctx ends, client c starting at face c; a refused connection goes to the next face.
func load(ctx context.Context, t *testing.T, m mode, c int, token string, counts *loadCounts, killedAt *atomic.Pointer[time.Time]) {
	paths := []string{"/patient-access/fhir/Patient/member-01", "/patient-access/fhir/ExplanationOfBenefit?_count=2"}
	for i := 0; ctx.Err() == nil; i++ {
		face := m.faces[(c+i)%len(m.faces)]
		path := paths[i%len(paths)]
		var status int
		var err error
		for try := 0; try < len(m.faces); try++ {
			status, err = once(ctx, face+path, token, fmt.Sprintf("load %s %s", m.name, face))
			if !refused(err) {
				break
			}
			face = m.faces[(c+i+try+1)%len(m.faces)]
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			counts.lost.Add(1)
			t.Logf("%s %s: %v", face, path, err)
			continue
		}
		v, _ := counts.byStatus.LoadOrStore(status, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		switch {
		case status == 200:
			counts.ok.Add(1)
			if killedAt.Load() != nil {
				counts.okAfterKill.Add(1)
			}
		case status == 429:
			counts.limited.Add(1)
		case status >= 500:
			counts.fivexx.Add(1)
		default:
			counts.other.Add(1)
		}
	}
}

// once sends one request; an answer is noted for the audit check (whatever its status: every answer the
// gateway gave has its record).
func once(ctx context.Context, url, token, what string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	record(what, resp.StatusCode, resp.Header)
	return resp.StatusCode, nil
}

// rejoins waits until the restarted replica serves again: its standalone face answers, and each Envoy sends
// it requests (its gRPC port healthy in the authz cluster and counting requests).
func rejoins(t *testing.T, m mode, token string) {
	t.Helper()
	if m.name == "standalone" {
		a := get(t, "restarted replica", standaloneURL(killed)+"/patient-access/fhir/Patient/member-01", token, nil)
		if a.status != 200 {
			t.Fatalf("restarted replica %d: %d %.300s", killed, a.status, a.body)
		}
		return
	}
	host := fmt.Sprintf("fhirwall_authz::127.0.0.1:92%d1::", killed)
	for e, admin := range envoyAdminURLs {
		before := envoyHostStat(t, admin, host+"rq_total")
		deadline := time.Now().Add(20 * time.Second)
		for {
			for range 6 {
				get(t, "after the restart", envoyURLs[e]+"/patient-access/fhir/Patient/member-01", token, nil)
			}
			healthy := envoyHostStat(t, admin, host+"health_flags") == "healthy"
			if healthy && envoyHostStat(t, admin, host+"rq_total") != before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Envoy %s sends nothing to the restarted replica %d (health %s)", admin, killed, envoyHostStat(t, admin, host+"health_flags"))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// envoyHostStat reads one host's value from Envoy's admin /clusters ("cluster::host::stat::value").
func envoyHostStat(t *testing.T, admin, key string) string {
	t.Helper()
	resp, err := http.Get(admin + "/clusters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"::"); ok {
			return v
		}
	}
	t.Fatalf("%s: no %s in /clusters", admin, key)
	return ""
}
