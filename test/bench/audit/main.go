// Command audit is the load run of the audit path against real components: concurrent requests write records
// through the durable spool (one fsync per group commit) while the Kafka shipper copies them to a fresh topic
// with acks=all; then the topic is read back and verified, so the figures are only printed for a run that
// lost nothing.
//
//	go run ./test/bench/audit -records 50000 -writers 32
//
// It needs the stack's Kafka (make stack-up; 127.0.0.1:9092). Figures and how to read them: test/bench/README.md.
package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/test/stackaudit"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	records := flag.Int("records", 50000, "audit records to write")
	writers := flag.Int("writers", 32, "concurrent writers (requests in flight)")
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure: a fresh spool directory is made in it and removed after")
	keepTopic := flag.Bool("keep-topic", false, "keep the topic after a successful run (a failed run always keeps it)")
	timeout := flag.Duration("timeout", 10*time.Minute, "overall deadline")
	flag.Parse()
	if *records <= 0 || *writers <= 0 {
		fmt.Fprintln(os.Stderr, "audit bench: -records and -writers must be positive")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, strings.Split(*brokers, ","), *records, *writers, *dir, *keepTopic); err != nil {
		fmt.Fprintln(os.Stderr, "audit bench: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, brokers []string, n, writers int, parent string, keepTopic bool) error {
	fmt.Printf("machine: %d CPUs, %s/%s, %s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), runtime.Version())
	dir, err := os.MkdirTemp(parent, "fhirwall-audit-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fs, err := fsyncBaseline(dir, 1000, 200)
	if err != nil {
		return fmt.Errorf("fsync baseline: %w", err)
	}
	fmt.Printf("disk alone (%s): write 200 B + fsync, 1000 times: p50 %v  p99 %v  max %v\n",
		parent, pct(fs, 50), pct(fs, 99), pct(fs, 100))

	topic, err := newTopic(ctx, brokers[0], fmt.Sprintf("fhirwall.bench.audit.%d", time.Now().UnixNano()))
	if err != nil {
		return err
	}
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // fixed: the run is not about keys
	spoolDir := filepath.Join(dir, "spool")
	sp, err := audit.Open(spoolDir, audit.Options{Key: key})
	if err != nil {
		return err
	}
	// Warnings only: a broker that goes away mid-run shows here instead of as a silent wait.
	sh := kafka.NewShipper(sp, brokers, topic, kafka.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	defer sh.Close()
	shipCtx, stopShip := context.WithCancel(ctx)
	defer stopShip()
	shipped := make(chan error, 1)
	go func() { shipped <- sh.Run(shipCtx) }()

	fmt.Printf("writing %d records with %d writers into %s, shipping to %s (3 partitions, acks=all)\n", n, writers, spoolDir, topic)
	lat, wrote, err := load(ctx, sp, n, writers)
	if err != nil {
		sp.Close()
		return err
	}
	lagAtEnd := sp.Stats()
	// Everything written so far is acknowledged by Kafka when the cursor reaches the durable seq.
	for st := sp.Stats(); st.Cursor < st.Durable; st = sp.Stats() {
		select {
		case err := <-shipped:
			sp.Close()
			return fmt.Errorf("shipper stopped: %v (topic %s kept)", err, topic)
		case <-ctx.Done():
			sp.Close()
			return fmt.Errorf("waiting for Kafka: %w; %d of %d entries acknowledged, %d failed batch writes (topic %s kept)",
				ctx.Err(), st.Cursor, st.Durable, sh.Stats().Failures, topic)
		case <-time.After(time.Millisecond):
		}
	}
	acked := time.Since(wrote.start)
	if err := sp.Close(); err != nil { // the stop checkpoint; the shipper sends it and returns
		return err
	}
	if err := <-shipped; err != nil {
		return fmt.Errorf("shipper: %w", err)
	}
	shStats := sh.Stats()

	slices.Sort(lat)
	fmt.Printf("into the spool:   %8.0f records/s  (%d records in %v)\n", float64(n)/wrote.took.Seconds(), n, wrote.took.Round(time.Millisecond))
	fmt.Printf("acked by Kafka:   %8.0f records/s  (all acknowledged %v after the first write; lag when writing ended: %d entries)\n",
		float64(n)/acked.Seconds(), acked.Round(time.Millisecond), lagAtEnd.Durable-lagAtEnd.Cursor)
	fmt.Printf("Write latency:    p50 %v  p99 %v  p99.9 %v  max %v\n", pct(lat, 50), pct(lat, 99), pct(lat, 99.9), pct(lat, 100))
	fmt.Printf("shipper:          %d entries shipped, %d failed batch writes\n", shStats.Shipped, shStats.Failures)

	head, err := audit.ReadHead(filepath.Join(spoolDir, "head.json"))
	if err != nil {
		return err
	}
	var msgs []audit.Message
	start := time.Now()
	if err := kafka.ReadTopic(ctx, brokers, topic, func(m audit.Message) error { msgs = append(msgs, m); return nil }); err != nil {
		return fmt.Errorf("reading %s back: %w", topic, err)
	}
	read := time.Since(start)
	var recBytes, recs int
	for _, m := range msgs {
		if e, err := audit.ParseLine(m.Value); err == nil && e.Kind == audit.KindAccess {
			recBytes += len(m.Value) + 1 // the spool's newline
			recs++
		}
	}
	if recs > 0 {
		fmt.Printf("bytes per record: %d (one sealed line; the Kafka message value plus a newline on disk)\n", recBytes/recs)
	}
	rs := audit.VerifyMessages(msgs, audit.Keys{key.Public().(ed25519.PublicKey)}, head)
	fmt.Printf("topic read back:  %d messages in %v\n", len(msgs), read.Round(time.Millisecond))
	for _, r := range rs {
		fmt.Printf("verify: %s\n", r)
	}
	if len(rs) != 1 || rs[0].Break != nil || rs[0].Records != n || rs[0].Signed != head.Seq {
		return fmt.Errorf("verify: want one intact chain of %d records signed to seq %d (topic %s kept)", n, head.Seq, topic)
	}
	if !keepTopic {
		if err := deleteTopic(brokers[0], topic); err != nil {
			fmt.Fprintf(os.Stderr, "audit bench: topic %s not deleted: %v\n", topic, err)
		}
	}
	return nil
}

type window struct {
	start time.Time
	took  time.Duration
}

// load runs writers goroutines that write n records between them as fast as each Write returns, like
// requests each waiting for their audit record; it returns every Write's latency.
func load(ctx context.Context, sp *audit.Spool, n, writers int) ([]time.Duration, window, error) {
	var next atomic.Int64
	lats := make([][]time.Duration, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			own := make([]time.Duration, 0, n/writers+1)
			for {
				i := int(next.Add(1))
				if i > n {
					break
				}
				r := record(i)
				t := time.Now()
				if err := sp.Write(ctx, r); err != nil {
					errs[w] = fmt.Errorf("record %d: %w", i, err)
					break
				}
				own = append(own, time.Since(t))
			}
			lats[w] = own
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, window{}, err
	}
	return slices.Concat(lats...), window{start, took}, nil
}

// record is one patient-access read of an ExplanationOfBenefit as the decision core records it (the shape of
// BenchmarkSpoolWrite's record); patients spread over a thousand members, and so over the partitions.
func record(i int) audit.Record {
	patient := fmt.Sprintf("member-%04d", i%1000)
	return audit.Record{
		ID: audit.NewID(), Time: time.Now().UTC(), API: "patient-access", DecisionID: audit.NewID(),
		Allow: true, Reasons: []string{}, PolicyRevision: "sha256:3f1c9a0e5b7d2c48",
		ClientID: "patient-app", Subject: "5f0c2d7e-3b8a-4e61-9a2f-1d6c8b7e4a90", FHIRUser: "Patient/" + patient,
		TokenJTI: audit.NewID(), Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/Coverage.rs"},
		Patients: []string{patient}, ResourceType: "ExplanationOfBenefit", Interaction: "read", Method: "GET",
		Path: fmt.Sprintf("/fhir/ExplanationOfBenefit/eob-%s-%d", patient, i%20), SourceIP: "203.0.113.24",
		RequestID: audit.NewID(), Status: 200, DataCategories: []string{"claims"}, UpstreamMillis: 11.482, Bytes: 4817,
	}
}

// fsyncBaseline times count appends of size bytes, each followed by fsync, to a file in dir: what the disk
// alone costs a commit, to set beside the spool's latency.
func fsyncBaseline(dir string, count, size int) ([]time.Duration, error) {
	f, err := os.OpenFile(filepath.Join(dir, "fsync-baseline"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = 'a' + byte(i%26)
	}
	d := make([]time.Duration, count)
	for i := range d {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		d[i] = time.Since(t)
	}
	slices.Sort(d)
	return d, nil
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)].Round(time.Microsecond)
}

// newTopic creates topic with 3 partitions, like fhirwall.audit, and waits until each has a leader.
func newTopic(ctx context.Context, broker, topic string) (string, error) {
	cc, err := controller(broker)
	if err != nil {
		return "", err
	}
	defer cc.Close()
	if err := cc.CreateTopics(kafkago.TopicConfig{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}); err != nil {
		return "", fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if err := stackaudit.WaitForLeaders(ctx, broker, topic, 3); err != nil {
		return "", err
	}
	return topic, nil
}

func deleteTopic(broker, topic string) error {
	cc, err := controller(broker)
	if err != nil {
		return err
	}
	defer cc.Close()
	return cc.DeleteTopics(topic)
}

// controller dials the cluster's controller, which creates and deletes topics.
func controller(broker string) (*kafkago.Conn, error) {
	conn, err := kafkago.Dial("tcp", broker)
	if err != nil {
		return nil, fmt.Errorf("no Kafka at %s (make stack-up): %w", broker, err)
	}
	defer conn.Close()
	ctl, err := conn.Controller()
	if err != nil {
		return nil, err
	}
	return kafkago.Dial("tcp", fmt.Sprintf("%s:%d", ctl.Host, ctl.Port))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "cpu unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "cpu unknown"
}
