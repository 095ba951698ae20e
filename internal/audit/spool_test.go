package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func testKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

func testPub() ed25519.PublicKey { return testKey().Public().(ed25519.PublicKey) }

func openSpool(t *testing.T, dir string, o Options) *Spool {
	t.Helper()
	o.Key = testKey()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(i int) Record {
	return Record{ID: NewID(), Time: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC), API: "patient-access", Allow: true,
		ClientID: "patient-app", Patients: []string{fmt.Sprintf("member-%02d", i%7)}, Status: 200,
		Reasons: []string{}, Scopes: []string{"patient/*.rs"}, DataCategories: []string{"claims"}, Path: fmt.Sprintf("/r/%d", i)}
}

func write(t *testing.T, s *Spool, n int) {
	t.Helper()
	for i := range n {
		if err := s.Write(context.Background(), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func mustVerify(t *testing.T, dir string) Report {
	t.Helper()
	r, err := VerifySpool(dir, Keys{testPub()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Break != nil {
		t.Fatalf("verify: %s", r)
	}
	return r
}

func TestConcurrentWritersShareCommitsAndTheChainVerifies(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{CheckpointEvery: 100})
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := range 50 {
				if err := s.Write(context.Background(), rec(w*50+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, dir)
	if r.Records != 1000 || r.Checkpoints < 2+1000/(100+20) || r.First != 1 || r.Signed != r.Last {
		t.Fatalf("want 1000 records, a checkpoint at start, stop and about every 100, signed to the end: %s", r)
	}
}

func TestReopenContinuesTheChainWithStartAndStopCheckpoints(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	write(t, s, 5)
	s.Close()
	s = openSpool(t, dir, Options{})
	write(t, s, 5)
	s.Close()
	r := mustVerify(t, dir)
	if r.Records != 10 || r.Checkpoints != 4 {
		t.Fatalf("want 10 records and 4 checkpoints (start, stop twice): %s", r)
	}
}

func TestSecondProcessCannotOpenASpoolInUse(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	defer s.Close()
	if _, err := Open(dir, Options{Key: testKey()}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v", err)
	}
}

func TestCrashTornLineIsCutOnOpenAndTheChainContinues(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	write(t, s, 3)
	s.Close()
	seg := lastSegment(t, dir)
	appendBytes(t, seg, []byte(`{"chain":"x","seq":99,"prev_ha`))
	if r, _ := VerifySpool(dir, Keys{testPub()}); r.Break != nil || !strings.Contains(strings.Join(r.Notes, " "), "incomplete last line") {
		t.Fatalf("a torn last line is a crash, not tampering: %s", r)
	}
	s = openSpool(t, dir, Options{})
	write(t, s, 3)
	s.Close()
	if r := mustVerify(t, dir); r.Records != 6 {
		t.Fatalf("records: %s", r)
	}
}

func TestFullBudgetRefusesUntilKafkaAcknowledges(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{MaxBytes: 8 << 10, SegmentBytes: 2 << 10, CheckpointEvery: 1 << 20})
	defer s.Close()
	var full error
	n := 0
	for ; n < 1000 && full == nil; n++ {
		full = s.Write(context.Background(), rec(n))
	}
	if !errors.Is(full, ErrFull) {
		t.Fatalf("after %d records: %v, want ErrFull", n, full)
	}
	if s.Ready(context.Background()) == nil {
		t.Fatal("a full spool reports ready")
	}
	st := s.Stats()
	if err := s.Ack(st.Durable); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Segments != 1 || s.Stats().Bytes >= st.Bytes {
		t.Fatalf("ack did not trim: before %+v after %+v", st, s.Stats())
	}
	if err := s.Write(context.Background(), rec(0)); err != nil {
		t.Fatalf("after trimming: %v", err)
	}
}

func TestReaderReturnsDurableEntriesInOrderAndResumesAfterTheCursor(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SegmentBytes: 4 << 10})
	write(t, s, 60)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rd := s.NewReader()
	var got []Line
	for uint64(len(got)) < s.Stats().Durable {
		ls, err := rd.Next(ctx, 7, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ls...)
	}
	for i, l := range got {
		if l.Err != nil || l.Entry.Seq != uint64(i+1) {
			t.Fatalf("line %d: seq %d err %v", i, l.Entry.Seq, l.Err)
		}
	}
	if s.Stats().Segments < 3 {
		t.Fatalf("want several segments, got %d", s.Stats().Segments)
	}
	if err := s.Ack(40); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openSpool(t, dir, Options{SegmentBytes: 4 << 10})
	defer s.Close()
	ls, err := s.NewReader().Next(ctx, 1, 1<<20)
	if err != nil || ls[0].Entry.Seq != 41 {
		t.Fatalf("after restart the reader starts at %v (%v), want seq 41", ls, err)
	}
	if r := mustVerify(t, dir); r.First == 1 {
		t.Fatalf("trimmed segments still there: %s", r)
	}
}

func TestReaderWaitsForNewEntries(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	defer s.Close()
	rd := s.NewReader()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := rd.Next(ctx, 10, 1<<20); err != nil { // the start checkpoint
		t.Fatal(err)
	}
	go func() { time.Sleep(50 * time.Millisecond); write(t, s, 1) }()
	ls, err := rd.Next(ctx, 10, 1<<20)
	if err != nil || len(ls) != 1 || ls[0].Entry.Kind != KindAccess {
		t.Fatalf("got %v, %v", ls, err)
	}
}

func TestOpenRefusesASpoolWhoseTailWasRemoved(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	write(t, s, 5)
	s.Close()
	dropLastLines(t, lastSegment(t, dir), 2)
	if _, err := Open(dir, Options{Key: testKey()}); err == nil || !strings.Contains(err.Error(), "records were removed") {
		t.Fatalf("Open after the tail was cut: %v", err)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	s.Close()
	if err := s.Write(context.Background(), rec(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
}

func TestOpenWithoutKeyFails(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "keygen") {
		t.Fatalf("got %v", err)
	}
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(names) == 0 {
		t.Fatal("no segment")
	}
	return names[len(names)-1]
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func dropLastLines(t *testing.T, path string, n int) {
	ls := readLines(t, path)
	writeLines(t, path, ls[:len(ls)-n])
}

func TestReopenFindsALastEntryLongerThanTheTailWindow(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	r := rec(1)
	r.Path = strings.Repeat("p", 200<<10) // one line far beyond the 64 KiB read-back window
	if err := s.Write(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	s.Close()
	appendBytes(t, lastSegment(t, dir), []byte(strings.Repeat("x", 100<<10))) // and a torn line longer still
	s = openSpool(t, dir, Options{})
	write(t, s, 1)
	s.Close()
	if r := mustVerify(t, dir); r.Records != 2 {
		t.Fatalf("records: %s", r)
	}
}

func TestReaderReturnsALineLongerThanItsReadChunk(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	defer s.Close()
	r := rec(1)
	// ~2.5 MB, beyond the 1 MiB read chunk (a patient list this long is split in parts; a query is not)
	r.Query = strings.Repeat("q", 2500<<10)
	if err := s.Write(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rd := s.NewReader()
	var got []Line
	for len(got) < 2 {
		ls, err := rd.Next(ctx, 10, 64<<20)
		if err != nil {
			t.Fatalf("after %d lines: %v", len(got), err)
		}
		got = append(got, ls...)
	}
	if got[1].Err != nil || len(got[1].Raw) < 2500<<10 {
		t.Fatalf("long line: err %v, %d bytes", got[1].Err, len(got[1].Raw))
	}
}
