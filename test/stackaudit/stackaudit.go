// Package stackaudit reads fhirwall's audit records from the real stack's Kafka topic (test/stack/up.sh), so
// that an end-to-end suite can check that every answer it got left the audit record it should have.
package stackaudit

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
)

const (
	// Broker is the stack's Kafka broker (test/stack/ports.env KAFKA_PORT).
	Broker = "127.0.0.1:9092"
	// Topic is the audit topic of the stack's fhirwall config.
	Topic = "fhirwall.audit"
)

// Scan reads Topic on every partition from since, calling visit on every record (a JSON object; other
// messages are skipped) until visit returns true (Scan reports true) or ctx ends (false). An error means
// Kafka could not be read.
func Scan(ctx context.Context, since time.Time, visit func(rec map[string]any) bool) (bool, error) {
	return kafka.Scan(ctx, []string{Broker}, Topic, since, func(value []byte) bool {
		var rec map[string]any
		return json.Unmarshal(value, &rec) == nil && visit(rec)
	})
}

// Expectation is an answer a suite got whose audit record must be in the topic.
type Expectation struct {
	What       string // names the answer in failures (the mode and the exchange)
	DecisionID string // the answer's X-Fhirwall-Decision-Id
	Status     int    // the status the client got
	Client     string // the client_id the record must name; "" any
	Outcome    string // the outcome the record must carry; "" any
}

// Expect fails t unless, before ctx ends, the topic read from since holds a record for every expectation:
// api, the status the client got, and the client and the outcome where one is expected. An answer without a
// decision id fails at once.
func Expect(ctx context.Context, t testing.TB, since time.Time, api string, want []Expectation) {
	t.Helper()
	expect(t, func(visit func(map[string]any) bool) (bool, error) { return Scan(ctx, since, visit) }, api, want)
}

// expect is Expect over any source of records.
func expect(t testing.TB, scan func(visit func(rec map[string]any) bool) (bool, error), api string, want []Expectation) {
	t.Helper()
	byID := map[string]Expectation{}
	for _, w := range want {
		if w.DecisionID == "" {
			t.Errorf("%s: no X-Fhirwall-Decision-Id header", w.What)
			continue
		}
		byID[w.DecisionID] = w
	}
	if len(byID) == 0 {
		return
	}
	_, err := scan(func(rec map[string]any) bool {
		w, ok := byID[fmt.Sprint(rec["decision_id"])]
		if !ok {
			return false
		}
		delete(byID, w.DecisionID)
		raw, _ := json.Marshal(rec)
		if rec["api"] != api {
			t.Errorf("%s: record api %v: %s", w.What, rec["api"], raw)
		}
		if st, _ := rec["status"].(float64); int(st) != w.Status {
			t.Errorf("%s: record status %v, the client got %d", w.What, rec["status"], w.Status)
		}
		if w.Client != "" && rec["client_id"] != w.Client {
			t.Errorf("%s: record client_id %v, want %s", w.What, rec["client_id"], w.Client)
		}
		if w.Outcome != "" && rec["outcome"] != w.Outcome {
			t.Errorf("%s: record outcome %v, want %s: %s", w.What, rec["outcome"], w.Outcome, raw)
		}
		return len(byID) == 0
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range byID {
		t.Errorf("%s: no audit record with decision_id %s in Kafka", w.What, w.DecisionID)
	}
}
