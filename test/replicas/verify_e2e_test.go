//go:build e2e

package replicas

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackaudit"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// TestAuditOfEveryReplicaReachesKafkaAndVerifies runs last (Go runs the tests of a package's files in file-name order):
// every answer the suite got — from the killed replica before its death included — has its record in the
// topic, and `fhirwall audit verify` over the topic, against each replica spool's signed head, proves every
// replica's chain whole to its end.
func TestAuditOfEveryReplicaReachesKafkaAndVerifies(t *testing.T) {
	evidence.Proves(t, "AUD-02", "OPS-REPLICA-01")
	setup(t)
	seenMu.Lock()
	want := map[string]stackaudit.Expectation{}
	for _, e := range seen {
		switch {
		case e.DecisionID == "" && e.Status >= 500:
			// Envoy's own reply when no replica decided (all ejected, ext_proc failed): nothing was decided, so
			// nothing is audited; TestReplicaKilledUnderLoad bounds how many there may be.
			continue
		case e.DecisionID == "":
			t.Errorf("%s: answer %d without X-Fhirwall-Decision-Id", e.What, e.Status)
			continue
		}
		want[e.DecisionID] = e
	}
	seenMu.Unlock()
	t.Logf("%d answers to find in %s", len(want), topic)

	var missing map[string]stackaudit.Expectation
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing = map[string]stackaudit.Expectation{}
		for id, e := range want {
			missing[id] = e
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := kafka.ReadTopic(ctx, []string{stackaudit.Broker}, topic, func(m audit.Message) error {
			var rec struct {
				DecisionID string `json:"decision_id"`
				Status     int    `json:"status"`
			}
			if json.Unmarshal(m.Value, &rec) == nil {
				if w, ok := missing[rec.DecisionID]; ok {
					if rec.Status != w.Status {
						t.Errorf("%s: record status %d, the client got %d", w.What, rec.Status, w.Status)
					}
					delete(missing, rec.DecisionID)
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, e := range missing {
		t.Errorf("%s (status %d): no audit record with decision_id %s in %s", e.What, e.Status, e.DecisionID, topic)
	}

	// The heads say where each chain ends; verify proves the topic holds each chain whole up to there.
	var heads []string
	for k := 1; k <= replicaCount; k++ {
		heads = append(heads, filepath.Join(stackenv.StateDir(), "replicas", fmt.Sprintf("r%d", k), "spool", "head.json"))
	}
	pub := filepath.Join(stackenv.StateDir(), "audit", "signing.key.pub")
	if _, err := os.Stat(pub); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var err error
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Second) {
		cmd := exec.Command(filepath.Join(binDir(), "fhirwall"), "audit", "verify", "-kafka", stackaudit.Broker, "-topic", topic,
			"-key", pub, "-head", strings.Join(heads, ","))
		out, err = cmd.CombinedOutput()
		if err == nil || time.Now().After(deadline) {
			break
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("fhirwall audit verify: %v", err)
		}
	}
	t.Logf("fhirwall audit verify:\n%s", out)
	if err != nil {
		t.Fatalf("fhirwall audit verify over %s: %v", topic, err)
	}
	if want := fmt.Sprintf("OK: %d chains", replicaCount); !bytes.Contains(out, []byte(want)) {
		t.Errorf("verify did not report %q", want)
	}
}
