package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// spoolOf writes n records (checkpoints every 10) and returns the closed spool's directory.
func spoolOf(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s := openSpool(t, dir, Options{CheckpointEvery: 10})
	write(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func wantBreak(t *testing.T, r Report, seq uint64, problem string) {
	t.Helper()
	if r.Break == nil {
		t.Fatalf("tampering not found: %s", r)
	}
	if (seq != 0 && r.Break.Seq != seq) || !strings.Contains(r.Break.Problem, problem) {
		t.Fatalf("break %q, want seq %d and %q", r.Break.Error(), seq, problem)
	}
}

func verifySpool(t *testing.T, dir string) Report {
	t.Helper()
	r, err := VerifySpool(dir, Keys{testPub()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Line k of the only segment holds seq k+1 (line 0 is the start checkpoint, seq 1).
func TestSpoolTampering(t *testing.T) {
	cases := []struct {
		name    string
		tamper  func(t *testing.T, seg string)
		seq     uint64
		problem string
	}{
		{"flipped byte", func(t *testing.T, seg string) {
			ls := readLines(t, seg)
			i := bytes.Index(ls[5], []byte("patient-app"))
			ls[5][i] ^= 0x01
			writeLines(t, seg, ls)
		}, 0, "does not match its hash"},
		{"deleted record", func(t *testing.T, seg string) {
			ls := readLines(t, seg)
			writeLines(t, seg, append(ls[:5:5], ls[6:]...))
		}, 6, "missing or out of order: expected seq 6, found seq 7"},
		{"two records swapped", func(t *testing.T, seg string) {
			ls := readLines(t, seg)
			ls[5], ls[6] = ls[6], ls[5]
			writeLines(t, seg, ls)
		}, 6, "expected seq 6, found seq 7"},
		{"tail truncated", func(t *testing.T, seg string) { dropLastLines(t, seg, 3) }, 0, "tail truncated"},
		{"tail cut mid-line", func(t *testing.T, seg string) {
			b, _ := os.ReadFile(seg)
			os.WriteFile(seg, b[:len(b)-40], 0o600)
		}, 0, "tail truncated"},
		{"record rewritten with every later hash recomputed", func(t *testing.T, seg string) {
			writeLines(t, seg, rechain(t, readLines(t, seg), 5, "patient-app", "another-app"))
		}, 12, "checkpoint: signature does not verify"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := spoolOf(t, 20)
			mustVerify(t, dir)
			c.tamper(t, lastSegment(t, dir))
			wantBreak(t, verifySpool(t, dir), c.seq, c.problem)
		})
	}
}

func TestDeletedUnshippedSegmentIsABreak(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SegmentBytes: 2 << 10})
	write(t, s, 30)
	s.Close()
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	os.Remove(names[0])
	wantBreak(t, verifySpool(t, dir), 1, "a segment was deleted")
}

func TestSegmentDeletedFromTheMiddleIsABreak(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SegmentBytes: 2 << 10})
	write(t, s, 30)
	s.Close()
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	os.Remove(names[1])
	wantBreak(t, verifySpool(t, dir), 0, "missing or out of order")
}

// rechain replaces old with new in line i and recomputes every hash from there on, as someone without the
// signing key would: the chain holds, the next checkpoint's signature does not.
func rechain(t *testing.T, lines [][]byte, i int, old, new string) [][]byte {
	t.Helper()
	out := make([][]byte, len(lines))
	copy(out, lines)
	out[i] = bytes.Replace(lines[i], []byte(old), []byte(new), 1)
	prev := ""
	for j := i; j < len(out); j++ {
		l := bytes.TrimSuffix(out[j], []byte("\n"))
		if prev != "" {
			e, _ := ParseLineUnchecked(l)
			l = bytes.Replace(l, []byte(`"prev_hash":"`+e.PrevHash+`"`), []byte(`"prev_hash":"`+prev+`"`), 1)
		}
		body := append(bytes.Clone(l[:len(l)-sealSuffixLen]), '}')
		sum := sha256.Sum256(body)
		prev = hex.EncodeToString(sum[:])
		out[j] = append(append(l[:len(l)-sealSuffixLen:len(l)-sealSuffixLen], `,"hash":"`+prev+`"}`...), '\n')
	}
	return out
}

// ParseLineUnchecked reads a line's members without checking its hash (tests only).
func ParseLineUnchecked(l []byte) (Entry, error) { return lenient(l), nil }

// topicOf ships a spool's lines into fake partitions the way the shipper keys them.
func topicOf(t *testing.T, dir string, parts int) []Message {
	t.Helper()
	var msgs []Message
	offsets := make([]int64, parts)
	for _, l := range readLines(t, lastSegment(t, dir)) {
		l = bytes.TrimSuffix(l, []byte("\n"))
		e, err := ParseLine(l)
		if err != nil {
			t.Fatal(err)
		}
		h := fnv.New32a()
		h.Write([]byte(e.Key()))
		p := int(h.Sum32() % uint32(parts))
		msgs = append(msgs, Message{Partition: p, Offset: offsets[p], Value: l})
		offsets[p]++
	}
	return msgs
}

func verifyTopic(t *testing.T, msgs []Message, head *Head) Report {
	t.Helper()
	rs := VerifyMessages(msgs, Keys{testPub()}, head)
	if len(rs) != 1 {
		t.Fatalf("want one chain, got %d: %v", len(rs), rs)
	}
	return rs[0]
}

func headOf(t *testing.T, dir string) *Head {
	h, err := ReadHead(filepath.Join(dir, headFile))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestTopicIntactWithRetriedDuplicates(t *testing.T) {
	dir := spoolOf(t, 30)
	msgs := topicOf(t, dir, 3)
	retried := append(msgs, msgs[10:15]...) // a batch sent again after a lost acknowledgement
	r := verifyTopic(t, retried, headOf(t, dir))
	if r.Break != nil || r.Duplicates != 5 || r.Records != 30 || r.Signed != r.Last {
		t.Fatalf("%s", r)
	}
}

func TestTopicTampering(t *testing.T) {
	samePartitionPair := func(msgs []Message) (int, int) {
		for i := 3; i < len(msgs); i++ {
			for j := i + 1; j < len(msgs); j++ {
				if msgs[i].Partition == msgs[j].Partition {
					return i, j
				}
			}
		}
		return -1, -1
	}
	cases := []struct {
		name    string
		tamper  func([]Message) []Message
		problem string
	}{
		{"flipped byte", func(m []Message) []Message {
			m[7].Value = bytes.Clone(m[7].Value)
			m[7].Value[len(m[7].Value)/2] ^= 0x01
			return m
		}, "hash"},
		{"deleted record", func(m []Message) []Message { return append(m[:7:7], m[8:]...) }, "missing or out of order"},
		{"two records of a partition swapped", func(m []Message) []Message {
			i, j := samePartitionPair(m)
			m[i].Value, m[j].Value = m[j].Value, m[i].Value
			return m
		}, "reordered"},
		{"tail truncated", func(m []Message) []Message { return m[:len(m)-4] }, "tail truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := spoolOf(t, 30)
			wantBreak(t, verifyTopic(t, c.tamper(topicOf(t, dir, 3)), headOf(t, dir)), 0, c.problem)
		})
	}
}

func TestTopicForkIsABreak(t *testing.T) {
	a := spoolOf(t, 5)
	b := t.TempDir()
	for _, n := range []string{lastSegment(t, a), filepath.Join(a, headFile)} {
		data, _ := os.ReadFile(n)
		os.WriteFile(filepath.Join(b, filepath.Base(n)), data, 0o600)
	}
	for _, dir := range []string{a, b} { // two proxies continuing one copied spool
		s := openSpool(t, dir, Options{})
		write(t, s, 2)
		s.Close()
	}
	msgs := append(topicOf(t, a, 1), topicOf(t, b, 1)...)
	wantBreak(t, verifyTopic(t, msgs, nil), 0, "fork")
}

func TestSignatureFromAnotherKeyIsABreak(t *testing.T) {
	dir := spoolOf(t, 3)
	other := NewWalker(Keys{make([]byte, 32)})
	for _, l := range readLines(t, lastSegment(t, dir)) {
		if !other.Add(l, "x") {
			break
		}
	}
	wantBreak(t, other.Finish(nil, "x"), 1, "signed by key")
}

func FuzzParseLine(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, Options{Key: testKey()})
	if err != nil {
		f.Fatal(err)
	}
	_ = s.Write(context.Background(), rec(1))
	s.Close()
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	b, _ := os.ReadFile(names[0])
	for _, l := range bytes.Split(b, []byte("\n")) {
		f.Add(l)
	}
	f.Add([]byte(`{"chain":"c","seq":1,"prev_hash":"` + GenesisHash + `","hash":"` + GenesisHash + `"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseLine(line)
		if err != nil {
			return
		}
		// Whatever parses must have been sealed: sealing its body again gives the same line.
		body := append(bytes.Clone(line[bytes.Index(line, []byte(`"prev_hash":"`))+len(`"prev_hash":"`)+hashHexLen+1:len(line)-sealSuffixLen]), '}')
		body = append([]byte("{"), bytes.TrimPrefix(body, []byte(","))...)
		again, h, err := seal(body, e.Chain, e.Seq, e.PrevHash)
		if err != nil || h != e.Hash || !bytes.Equal(again, line) {
			t.Fatalf("parsed but not reproducible: %q", line)
		}
	})
}

func TestChainAcrossAKeyRotationVerifiesWithBothKeys(t *testing.T) {
	dir := spoolOf(t, 3)
	newKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	s, err := Open(dir, Options{Key: newKey})
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, 3)
	s.Close()
	both := Keys{testPub(), newKey.Public().(ed25519.PublicKey)}
	if r, _ := VerifySpool(dir, both); r.Break != nil {
		t.Fatalf("with both keys: %s", r)
	}
	wantBreak(t, verifySpool(t, dir), 0, "add the older .pub") // the new key is missing
}
