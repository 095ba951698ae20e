//go:build e2e

package kafka

// Against the stack's real Kafka: the largest audit records reach a topic sized as the audit topic must be,
// come back whole through ReadTopic, and verify; a topic left at Kafka's default size is named.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
)

// bulkExport is the record of a Provider Access or Payer-to-Payer bulk export naming n members.
func bulkExport(n int) audit.Record {
	r := audit.Record{ID: audit.NewID(), Time: time.Now().UTC(), API: "provider-access", DecisionID: audit.NewID(),
		Allow: true, ClientID: "provider-app", Scopes: []string{"system/*.rs"}, Reasons: []string{},
		ResourceType: "Group", Interaction: "export", Method: "GET", Path: "/provider-access/fhir/Group/attributed/$export",
		RequestID: audit.NewID(), Status: 202, DataCategories: []string{"claims", "clinical"}}
	r.Patients = make([]string, n)
	for i := range r.Patients {
		id := audit.NewID() // 32 hex, as long as a HAPI UUID-less id gets; a FHIR id is at most 64
		r.Patients[i] = fmt.Sprintf("Patient/%s-%s-%s", id[:8], id[8:12], id[12:])
	}
	return r
}

func TestFiftyThousandPatientBulkRecordShipsInPartsAndVerifies(t *testing.T) {
	evidence.Proves(t, "AUD-02")
	topic := newTopic(t, "bulk")
	big := bulkExport(50_000)
	whole, _ := json.Marshal(big)
	before := audit.Record{ID: audit.NewID(), Time: time.Now().UTC(), ClientID: "patient-app", Patients: []string{"member-01"}}
	after := before
	after.ID = audit.NewID()
	start := time.Now()
	_, head := shipRecords(t, topic, []audit.Record{before, big, after})
	shipped := time.Since(start)
	msgs := readAll(t, topic)
	rs := audit.VerifyChains(msgs, audit.Keys{pub()}, head)
	if len(rs) != 1 || rs[0].Break != nil || rs[0].Signed != head.Seq {
		t.Fatalf("%v", rs)
	}
	var parts []audit.Record
	largest := 0
	for _, m := range msgs {
		largest = max(largest, len(m.Value))
		var r audit.Record
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatal(err)
		}
		if r.SplitID == big.ID {
			parts = append(parts, r)
		}
	}
	slices.SortFunc(parts, func(a, b audit.Record) int { return a.Part - b.Part })
	var joined []string
	for i, p := range parts {
		if p.Part != i+1 || p.Parts != len(parts) || p.RequestID != big.RequestID || p.DecisionID != big.DecisionID {
			t.Fatalf("part %d: %d/%d", i+1, p.Part, p.Parts)
		}
		joined = append(joined, p.Patients...)
	}
	if !slices.Equal(joined, big.Patients) {
		t.Fatalf("the %d parts in Kafka name %d patients, the record %d", len(parts), len(joined), len(big.Patients))
	}
	t.Logf("50,000-patient record: %d bytes whole; written as %d parts; largest message %d bytes (topic max.message.bytes %d); "+
		"written and shipped in %v; %d entries verified, chain %s seq %d..%d signed to %d",
		len(whole), len(parts), largest, MaxMessageBytes, shipped.Round(time.Millisecond), rs[0].Entries, rs[0].Chain, rs[0].First, rs[0].Last, rs[0].Signed)
	if n, err := CheckTopic(context.Background(), []string{broker}, topic); err != nil || n != MaxMessageBytes {
		t.Fatalf("CheckTopic: %d, %v", n, err)
	}
}

// The sizing itself, end to end: an entry just under audit.MaxEntryBytes (a long query; only the patient
// list is split) is produced, fetched and verified.
func TestLargestEntryShipsWholeAndVerifies(t *testing.T) {
	evidence.Proves(t, "AUD-02")
	topic := newTopic(t, "largest")
	r := audit.Record{ID: audit.NewID(), Time: time.Now().UTC(), ClientID: "patient-app", Patients: []string{"member-01"},
		Query: strings.Repeat("q", audit.MaxEntryBytes-64<<10)}
	start := time.Now()
	_, head := shipRecords(t, topic, []audit.Record{r})
	shipped := time.Since(start)
	msgs := readAll(t, topic)
	rs := audit.VerifyChains(msgs, audit.Keys{pub()}, head)
	if len(rs) != 1 || rs[0].Break != nil || rs[0].Records != 1 {
		t.Fatalf("%v", rs)
	}
	largest := 0
	for _, m := range msgs {
		largest = max(largest, len(m.Value))
	}
	if largest < audit.MaxEntryBytes-64<<10 {
		t.Fatalf("largest message %d bytes", largest)
	}
	t.Logf("an entry of %d bytes (MaxEntryBytes %d) shipped in %v and verified", largest, audit.MaxEntryBytes, shipped.Round(time.Millisecond))
}

// A topic at Kafka's default size: CheckTopic names it, and an entry above it is never acknowledged to the
// spool (it waits there, the shipper says why) instead of being dropped.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestUndersizedTopicIsNamedAndNothingIsAcknowledged(t *testing.T) {
	evidence.Proves(t, "AUD-03")
	const kafkaDefault = 1048588
	topic := newTopicWith(t, "small", kafkaDefault)
	n, err := CheckTopic(context.Background(), []string{broker}, topic)
	if !errors.Is(err, ErrTopicTooSmall) || n != kafkaDefault {
		t.Fatalf("CheckTopic: %d, %v", n, err)
	}
	sp, err := audit.Open(t.TempDir(), audit.Options{Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	r := audit.Record{ID: audit.NewID(), Time: time.Now().UTC(), ClientID: "patient-app", Query: strings.Repeat("q", 2<<20)}
	if err := sp.Write(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	sh := NewShipper(sp, []string{broker}, topic, Options{BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	defer sh.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	// A new topic's metadata can take kafka-go's metadata TTL (6 s) to reach the writer: until then the
	// writes fail as "unknown topic", then as too large.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "refuses an entry as too large") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if st := sp.Stats(); st.Cursor >= st.Durable-1 { // the start checkpoint may ship; the record must not
		t.Fatalf("acknowledged without Kafka: %+v", st)
	}
	for _, want := range []string{"max.message.bytes", "refuses an entry as too large"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the shipper's log does not say %q:\n%s", want, logs.String())
		}
	}
}
