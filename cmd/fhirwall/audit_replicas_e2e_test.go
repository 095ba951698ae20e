//go:build e2e

package main

// Against the stack's real Kafka (a topic of the test's own): three fhirwall-proxy replicas, each with its own
// spool and chain, ship to one topic at once; one of them carries a 50,000-patient bulk record (split in
// parts), one stops for good without its stop checkpoint. `fhirwall audit verify -kafka` proves all three
// chains whole, and `fhirwall audit query` finds a bulk patient's part.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackaudit"
)

const e2eBroker = stackaudit.Broker

func ownTopic(t *testing.T) string {
	t.Helper()
	topic, err := stackaudit.NewTopic("fhirwall.test.replicas", 3)
	if errors.Is(err, stackaudit.ErrNoBroker) {
		require.Missing(t, fmt.Sprintf("%v (make stack-up)", err))
	}
	if err != nil {
		t.Fatal(err)
	}
	return topic
}

func TestVerifyProvesEveryReplicasChainInOneTopic(t *testing.T) {
	evidence.Proves(t, "AUD-02")
	topic := ownTopic(t)
	tmp := t.TempDir()
	key := filepath.Join(tmp, "signing.key")
	if code, out, err := cli(t, "audit", "keygen", "-out", key); code != 0 || err != nil {
		t.Fatalf("keygen: %d %v %s", code, err, out)
	}
	priv, err := audit.LoadSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	bulk := make([]string, 50_000)
	for i := range bulk {
		bulk[i] = fmt.Sprintf("Patient/bulk-%06d", i)
	}
	var wg sync.WaitGroup
	heads := make([]string, 3)
	errs := make(chan error, 3)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(tmp, fmt.Sprintf("spool-%d", r))
			sp, err := audit.Open(dir, audit.Options{Key: priv, CheckpointEvery: 10})
			if err != nil {
				errs <- err
				return
			}
			n := 40
			if r == 2 {
				n = 45 // ends with 5 records after its last checkpoint
			}
			for i := range n {
				rec := audit.Record{ID: audit.NewID(), Time: time.Now().UTC(), API: "patient-access", Allow: true, Status: 200,
					ClientID: fmt.Sprintf("app-%d", r), Patients: []string{fmt.Sprintf("member-%02d", i%7)}}
				if r == 0 && i == 20 {
					rec.API, rec.ClientID, rec.Patients = "provider-access", "provider-app", bulk
				}
				if err := sp.Write(context.Background(), rec); err != nil {
					errs <- err
					return
				}
			}
			sh := kafka.NewShipper(sp, []string{e2eBroker}, topic, kafka.Options{})
			defer sh.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- sh.Run(ctx) }()
			for sp.Stats().Cursor < sp.Stats().Durable {
				time.Sleep(20 * time.Millisecond)
			}
			if r == 2 { // gone for good: its last entries shipped, no stop checkpoint, no head given
				cancel()
				<-done
				sp.Close() // releases the flock only; the stop checkpoint it adds is never shipped
				return
			}
			if err := sp.Close(); err != nil {
				errs <- err
				return
			}
			if err := <-done; err != nil {
				errs <- err
				return
			}
			heads[r] = filepath.Join(dir, "head.json")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	code, out, err := cli(t, "audit", "verify", "-kafka", e2eBroker, "-topic", topic, "-key", key+".pub", "-head", heads[0]+","+heads[1])
	t.Logf("fhirwall audit verify:\n%s", out)
	if code != 0 || err != nil || !strings.Contains(out, "OK: 3 chains") || strings.Count(out, "signed up to seq") != 3 ||
		!strings.Contains(out, "covered only by the hash chain") {
		t.Fatalf("exit %d, %v", code, err)
	}
	code, out, err = cli(t, "audit", "query", "-kafka", e2eBroker, "-topic", topic, "-patient", "Patient/bulk-049999")
	if code != 0 || err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"split_id"`) {
		t.Fatalf("query of a bulk patient: exit %d, %v, %d lines", code, err, strings.Count(out, "\n"))
	}
}
