//go:build e2e

package payertopayer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/test/membermatch"
)

// --- HRex / PDex request bodies ---------------------------------------------------------------------------

// optIn names recipient from yesterday for a year; expiredOptIn named it for 2024 only.
func optIn(recipient string) map[string]any { return membermatch.OptIn(recipient, policyRegular) }

func expiredOptIn(recipient string) map[string]any {
	return membermatch.Consent(recipient, policyRegular, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
}

// memberParts are the parts describing one member as a new payer knows them: MemberPatient (the fixture
// Patient's demographics and member id, nothing of this server's: no id, meta, marker), CoverageToMatch
// (the old coverage's subscriber id), and the Consent.
func memberParts(t *testing.T, patientID, coverageID string, c map[string]any) []any {
	t.Helper()
	p, ok := fixtures["Patient/"+patientID]
	if !ok {
		t.Fatalf("no Patient/%s in members.json", patientID)
	}
	cov, ok := fixtures["Coverage/"+coverageID]
	if !ok {
		t.Fatalf("no Coverage/%s in members.json", coverageID)
	}
	return memberPartsOf(p["name"], fmt.Sprint(p["birthDate"]), fmt.Sprint(p["gender"]), fmt.Sprint(cov["subscriberId"]), c)
}

func memberPartsOf(name any, birthDate, gender, memberID string, c map[string]any) []any {
	return membermatch.Member{Name: name, BirthDate: birthDate, Gender: gender, IDSystem: memberIDSys, MemberID: memberID}.Parts(c)
}

// memberMatchIn is an HRex member-match-in Parameters.
func memberMatchIn(parts []any) []byte { return membermatch.In(parts) }

// bulkMatchIn is a PDex multi-member-match-bundle-in Parameters: one MemberBundle per member.
func bulkMatchIn(members ...[]any) []byte { return membermatch.Bulk(members...) }

// nobody is a member this payer never had.
func nobody(c map[string]any) []any {
	return memberPartsOf([]any{map[string]any{"family": "Nobody", "given": []any{"Nemo"}}}, "1971-01-01", "other", "P2P-9999", c)
}

// --- audit ------------------------------------------------------------------------------------------------

// expectation is an answer the audit trail must hold, with the $member-match outcome when one is wanted.
type expectation struct {
	mode    string
	a       answer
	outcome string
	client  string
}

// checkAudit reads the audit topic from just before the suite started until every expected decision has its
// record: api payer-to-payer, the status the client got, the client, and the outcome where one is expected.
func checkAudit(t *testing.T, want []expectation) {
	t.Helper()
	byID := map[string]expectation{}
	for _, w := range want {
		if w.a.decisionID == "" {
			t.Errorf("%s %s: no X-Fhirwall-Decision-Id header", w.mode, w.a)
			continue
		}
		byID[w.a.decisionID] = w
	}
	if len(byID) == 0 {
		return
	}
	conn, err := kafkago.Dial("tcp", kafkaBroker)
	if err != nil {
		t.Fatalf("kafka: %v", err)
	}
	parts, err := conn.ReadPartitions(auditTopic)
	conn.Close()
	if err != nil || len(parts) == 0 {
		t.Fatalf("kafka partitions of %s: %v", auditTopic, err)
	}
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	records := make(chan map[string]any, 256)
	for _, p := range parts {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))},
			Topic: auditTopic, Partition: p.ID, MaxWait: 200 * time.Millisecond})
		defer r.Close()
		if err := r.SetOffsetAt(c, testStart.Add(-10*time.Second)); err != nil {
			t.Fatalf("kafka offset: %v", err)
		}
		go func() {
			for {
				msg, err := r.ReadMessage(c)
				if err != nil {
					return
				}
				var rec map[string]any
				if json.Unmarshal(msg.Value, &rec) == nil {
					select {
					case records <- rec:
					case <-c.Done():
						return
					}
				}
			}
		}()
	}
	for len(byID) > 0 {
		var rec map[string]any
		select {
		case rec = <-records:
		case <-c.Done():
			for _, w := range byID {
				t.Errorf("%s %s: no audit record with decision_id %s in Kafka", w.mode, w.a, w.a.decisionID)
			}
			return
		}
		w, ok := byID[fmt.Sprint(rec["decision_id"])]
		if !ok {
			continue
		}
		delete(byID, w.a.decisionID)
		raw := mustJSON(rec)
		if rec["api"] != api {
			t.Errorf("%s %s: record api %v: %s", w.mode, w.a, rec["api"], raw)
		}
		if st, _ := rec["status"].(float64); int(st) != w.a.status {
			t.Errorf("%s %s: record status %v, the client got %d", w.mode, w.a, rec["status"], w.a.status)
		}
		if w.client != "" && rec["client_id"] != w.client {
			t.Errorf("%s %s: record client_id %v, want %s", w.mode, w.a, rec["client_id"], w.client)
		}
		if w.outcome != "" && rec["outcome"] != w.outcome {
			t.Errorf("%s %s: record outcome %v, want %s: %s", w.mode, w.a, rec["outcome"], w.outcome, raw)
		}
	}
}

const (
	auditTopic  = "fhirwall.audit"
	kafkaBroker = "127.0.0.1:9092"
)
