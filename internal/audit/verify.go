package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Break is the first place a log stops being the one fhirwall wrote.
type Break struct {
	Seq     uint64 // the entry at or before which the chain breaks (0 when unknown)
	Where   string // segment file and line, or Kafka partition and offset
	Problem string
}

func (b *Break) Error() string {
	if b.Seq > 0 {
		return fmt.Sprintf("%s: seq %d: %s", b.Where, b.Seq, b.Problem)
	}
	return fmt.Sprintf("%s: %s", b.Where, b.Problem)
}

// Report is what verify found of one chain. Break is nil when the log is intact; otherwise it is the first
// problem found. Over a topic, a walk goes on past a gap (entries missing between two present ones), so the
// rest of the chain is still proven: every break found is in Breaks, the first of them is Break.
type Report struct {
	Chain       string
	First, Last uint64 // seq range walked
	LastTime    time.Time
	Entries     int
	Records     int // access records and admin entries
	Admin       int // of Records, the admin entries
	Checkpoints int
	Signed      uint64    // the last seq covered by a verified checkpoint or head
	SignedTime  time.Time // when the last verified checkpoint was written (zero when none)
	Duplicates  int       // identical entries seen again (Kafka retries); not a break
	Break       *Break
	Breaks      []Break
	Notes       []string
}

// String is the one-paragraph summary `fhirwall audit verify` prints.
func (r Report) String() string {
	var b strings.Builder
	if r.Break != nil {
		fmt.Fprintf(&b, "BROKEN: %s\n", r.Break.Error())
	} else {
		b.WriteString("OK\n")
	}
	admin := ""
	if r.Admin > 0 { // said only when there are some: the summary of a log without them reads as it always did
		admin = fmt.Sprintf(" of which %d admin", r.Admin)
	}
	fmt.Fprintf(&b, "chain %s: seq %d..%d, %d entries (%d records%s, %d checkpoints), signed up to seq %d",
		r.Chain, r.First, r.Last, r.Entries, r.Records, admin, r.Checkpoints, r.Signed)
	if !r.SignedTime.IsZero() {
		fmt.Fprintf(&b, " (checkpoint of %s)", r.SignedTime.UTC().Format(time.RFC3339))
	}
	if !r.LastTime.IsZero() {
		fmt.Fprintf(&b, ", last entry %s", r.LastTime.UTC().Format(time.RFC3339))
	}
	if r.Duplicates > 0 {
		fmt.Fprintf(&b, ", %d duplicates", r.Duplicates)
	}
	for _, g := range r.Breaks {
		if r.Break == nil || g != *r.Break { // that one is the BROKEN line
			fmt.Fprintf(&b, "\nalso BROKEN: %s", g.Error())
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s", n)
	}
	return b.String()
}

// Walker checks entries in chain order: each verifies its hash, follows the one before it by seq and
// prev_hash, stays on one chain, and each checkpoint's signature holds under Key.
type Walker struct {
	Keys Keys
	// PastGaps makes a gap (seqs missing between two present entries) a break that the walk goes on past,
	// taking the entry after it as a new start: over a topic, where an entry lost long ago must not leave
	// everything after it unchecked. Any other break still ends the walk.
	PastGaps bool
	report   Report
	last     *Entry
	stopped  bool
	hashes   map[uint64]string // seq → hash, to check a head against
}

// NewWalker returns a walker verifying signatures with keys.
func NewWalker(keys Keys) *Walker {
	return &Walker{Keys: keys, hashes: map[uint64]string{}}
}

// Add checks the next line, found at where. It returns false once the chain is broken (later lines are not
// looked at: the first break is the one to investigate).
func (w *Walker) Add(raw []byte, where string) bool {
	if w.stopped {
		return false
	}
	e, err := ParseLine(raw)
	if err != nil {
		seq := uint64(0)
		if w.last != nil {
			seq = w.last.Seq + 1
		}
		w.fail(seq, where, "%v (the entry was modified or is not an audit entry)", err)
		return false
	}
	return w.add(e, where)
}

func (w *Walker) add(e Entry, where string) bool {
	switch {
	case w.last == nil:
		w.report.Chain, w.report.First = e.Chain, e.Seq
		if e.Seq == 1 && e.PrevHash != GenesisHash {
			w.fail(e.Seq, where, "the first entry of a chain must have prev_hash %s", GenesisHash)
			return false
		}
		if e.Seq > 1 {
			w.note("the log starts at seq %d: earlier entries were shipped and trimmed, or are elsewhere", e.Seq)
		}
	case e.Chain != w.last.Chain:
		w.fail(e.Seq, where, "entry of chain %s inside chain %s", e.Chain, w.last.Chain)
		return false
	case e.Seq <= w.last.Seq:
		w.fail(w.last.Seq+1, where, "out of order or repeated: expected seq %d, found seq %d", w.last.Seq+1, e.Seq)
		return false
	case e.Seq > w.last.Seq+1:
		missing := fmt.Sprintf("seq %d", w.last.Seq+1)
		if e.Seq > w.last.Seq+2 {
			missing = fmt.Sprintf("seq %d..%d (%d entries)", w.last.Seq+1, e.Seq-1, e.Seq-1-w.last.Seq)
		}
		g := Break{Seq: w.last.Seq + 1, Where: where, Problem: fmt.Sprintf("missing or out of order: expected seq %d, found seq %d (%s of chain %s missing)", w.last.Seq+1, e.Seq, missing, e.Chain)}
		w.report.Breaks = append(w.report.Breaks, g)
		if w.report.Break == nil {
			w.report.Break = &w.report.Breaks[0]
		}
		if !w.PastGaps {
			w.stopped = true
			return false
		}
		// The entry after the gap starts a new stretch: its prev_hash names an entry that is not here.
	case e.PrevHash != w.last.Hash:
		w.fail(e.Seq, where, "prev_hash does not match the hash of seq %d: an entry was replaced", w.last.Seq)
		return false
	}
	if e.Kind == KindCheckpoint {
		if err := verifySig(w.Keys, e.KeyID, e.Signature, CheckpointStatement(e.Chain, e.Seq, e.PrevHash)); err != nil {
			w.fail(e.Seq, where, "checkpoint: %v", err)
			return false
		}
		w.report.Checkpoints++
		w.report.Signed, w.report.SignedTime = e.Seq, e.Time
	} else {
		w.report.Records++
		if e.Kind == KindAdmin {
			w.report.Admin++
		}
	}
	w.report.Entries++
	w.report.Last, w.report.LastTime = e.Seq, e.Time
	w.hashes[e.Seq] = e.Hash
	w.last = &e
	return true
}

// fail ends the walk; the first problem found stays the report's Break.
func (w *Walker) fail(seq uint64, where, format string, args ...any) {
	w.stopped = true
	w.report.Breaks = append(w.report.Breaks, Break{Seq: seq, Where: where, Problem: fmt.Sprintf(format, args...)})
	if w.report.Break == nil {
		w.report.Break = &w.report.Breaks[len(w.report.Breaks)-1]
	}
}

func (w *Walker) note(format string, args ...any) {
	w.report.Notes = append(w.report.Notes, fmt.Sprintf(format, args...))
}

// Finish checks the end of the log against a signed head (nil: none to compare) and returns the report.
// Without a head, a log cut after its last checkpoint cannot be told from a complete one; that is said.
func (w *Walker) Finish(head *Head, where string) Report {
	if !w.stopped && head != nil {
		switch err := head.Verify(w.Keys...); {
		case err != nil:
			w.fail(0, where, "head: %v", err)
		case w.last == nil:
			w.fail(head.Seq, where, "the log is empty but the signed head is at seq %d", head.Seq)
		case head.Chain != w.report.Chain:
			w.fail(0, where, "the head is of chain %s, the log of chain %s", head.Chain, w.report.Chain)
		case head.Seq > w.report.Last:
			w.fail(w.report.Last+1, where, "tail truncated: the log ends at seq %d but the signed head is at seq %d", w.report.Last, head.Seq)
		case head.Seq >= w.report.First && w.hashes[head.Seq] != head.Hash:
			w.fail(head.Seq, where, "the entry at the signed head's seq has another hash: the log was rewritten")
		default:
			w.report.Signed = max(w.report.Signed, head.Seq)
		}
	}
	if !w.stopped && w.report.Last > w.report.Signed {
		if head == nil {
			w.note("%d entries after the last checkpoint (seq %d) are covered only by the hash chain: compare with a signed head (-head) to rule out a cut tail", w.report.Last-w.report.Signed, w.report.Signed)
		} else {
			w.note("%d entries after the signed head (seq %d): written after the head was taken", w.report.Last-w.report.Signed, w.report.Signed)
		}
	}
	return w.report
}

// ReadHead reads a head file.
func ReadHead(path string) (*Head, error) {
	h, err := readJSON[Head](path)
	if err != nil {
		return nil, fmt.Errorf("head %s: %w", path, err)
	}
	return &h, nil
}

// VerifySpool walks every segment of a spool directory (running or not) and compares the end with the
// spool's signed head, and the start with its cursor: segments are deleted only once shipped.
func VerifySpool(dir string, keys Keys) (Report, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		return Report{}, err
	}
	if len(names) == 0 {
		return Report{}, fmt.Errorf("%s: no segments (*%s): not a spool directory?", dir, segSuffix)
	}
	slices.Sort(names)
	w := NewWalker(keys)
	for i, n := range names {
		if !verifySegment(w, n, i == len(names)-1) {
			break
		}
	}
	var head *Head
	if h, err := ReadHead(filepath.Join(dir, headFile)); err == nil {
		head = h
	} else if errors.Is(err, os.ErrNotExist) {
		w.note("no head.json: the tail cannot be checked")
	} else {
		w.note("unreadable head.json (a crash can leave it empty): %v", err)
	}
	c, err := readJSON[struct{ Seq uint64 }](filepath.Join(dir, cursorFile))
	switch {
	case err != nil && !errors.Is(err, os.ErrNotExist):
		w.note("unreadable cursor.json: cannot tell whether the oldest segments were shipped before they went: %v", err)
	case w.report.Break == nil && w.report.First > c.Seq+1: // no cursor file: nothing was shipped
		w.fail(c.Seq+1, filepath.Base(names[0]), "missing: the log starts at seq %d but only seq ≤ %d were shipped (a segment was deleted)", w.report.First, c.Seq)
	}
	return w.Finish(head, headFile), nil
}

func verifySegment(w *Walker, path string, newest bool) bool {
	f, err := os.Open(path)
	if err != nil {
		w.fail(0, filepath.Base(path), "%v", err)
		return false
	}
	defer f.Close()
	first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), segSuffix), 10, 64)
	if err != nil {
		w.fail(0, filepath.Base(path), "not a segment name")
		return false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	sc.Split(scanLinesKeepEnd)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		where := fmt.Sprintf("%s line %d", filepath.Base(path), n)
		if !bytes.HasSuffix(line, []byte("\n")) {
			if newest {
				w.note("%s: an incomplete last line (a write cut short by a crash; the spool drops it on start)", where)
				return true
			}
			w.fail(0, where, "an incomplete line inside the log: the segment was cut")
			return false
		}
		if n == 1 {
			if e, err := ParseLine(line); err == nil && e.Seq != first {
				w.fail(e.Seq, where, "the segment is named for seq %d but starts at seq %d", first, e.Seq)
				return false
			}
		}
		if !w.Add(line, where) {
			return false
		}
	}
	if err := sc.Err(); err != nil {
		w.fail(0, filepath.Base(path), "%v", err)
		return false
	}
	return true
}

// scanLinesKeepEnd is bufio.ScanLines that keeps the newline, so an unterminated last line can be told apart.
func scanLinesKeepEnd(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Message is one record of the audit topic.
type Message struct {
	Partition int
	Offset    int64
	Value     []byte
}

func (m Message) where() string { return fmt.Sprintf("partition %d offset %d", m.Partition, m.Offset) }

// VerifyMessages is VerifyChains with at most one head (nil: none).
func VerifyMessages(msgs []Message, keys Keys, head *Head) []Report {
	if head == nil {
		return VerifyChains(msgs, keys)
	}
	return VerifyChains(msgs, keys, head)
}

// VerifyChains walks the audit topic: one report per chain, that is per spool that ever wrote to it (each
// fhirwall-proxy replica has its own), in the order the chains first appear. Chains interleave freely over
// partitions. The topic's order is not a chain's (records are keyed by patient over partitions), so each
// chain's entries are put back in seq order; what Kafka does promise — one partition's order — is checked
// too, so two entries of one chain swapped in their partition are a break, while entries of one chain in
// different partitions may arrive in any order. Identical entries seen again are a producer retry and only
// counted; two different entries with one seq are a fork. A gap (seqs missing between two present entries)
// is a break naming the chain and the seqs, and the walk goes on past it. A chain that simply ends — a
// replica gone for good — is whole up to its last entry; a head given for a chain is compared with its end,
// which is how a cut tail shows.
func VerifyChains(msgs []Message, keys Keys, heads ...*Head) []Report {
	type item struct {
		m     Message
		seq   uint64
		valid bool
	}
	byChain := map[string][]item{}
	var order []string
	var unreadable []Report
	type pkey struct {
		chain string
		part  int
	}
	lastInPart := map[pkey]item{}
	seen := map[[sha256.Size]byte]bool{} // digests of exact bytes already seen: retries
	reordered := map[string]*Break{}
	dups := map[string]int{}
	for _, m := range msgs {
		e, err := ParseLine(m.Value)
		valid := err == nil
		if !valid {
			// Lenient read of the chain and seq, so the break is reported in its place in the chain.
			if l := lenient(m.Value); l.Chain != "" && l.Seq > 0 {
				e = l
			} else {
				unreadable = append(unreadable, Report{Break: &Break{Where: m.where(), Problem: fmt.Sprintf("%v (not an audit entry, or modified beyond reading)", err)}})
				continue
			}
		}
		if _, ok := byChain[e.Chain]; !ok {
			order = append(order, e.Chain)
		}
		digest := sha256.Sum256(m.Value)
		if seen[digest] {
			dups[e.Chain]++
			continue
		}
		seen[digest] = true
		it := item{m: m, seq: e.Seq, valid: valid}
		pk := pkey{e.Chain, m.Partition}
		if prev, ok := lastInPart[pk]; ok && e.Seq < prev.seq && reordered[e.Chain] == nil {
			reordered[e.Chain] = &Break{Seq: e.Seq, Where: m.where(), Problem: fmt.Sprintf("reordered: seq %d comes after seq %d (offset %d) in its partition", e.Seq, prev.seq, prev.m.Offset)}
		}
		if prev, ok := lastInPart[pk]; !ok || e.Seq > prev.seq {
			lastInPart[pk] = it
		}
		byChain[e.Chain] = append(byChain[e.Chain], it)
	}
	reports := unreadable
	for _, chain := range order {
		items := byChain[chain]
		// seq order; at one seq, entries that fail their hash first, so the modified one is the one named.
		slices.SortStableFunc(items, func(a, b item) int {
			if a.seq != b.seq {
				return cmpU(a.seq, b.seq)
			}
			switch {
			case a.valid == b.valid:
				return 0
			case !a.valid:
				return -1
			}
			return 1
		})
		w := NewWalker(keys)
		w.PastGaps = true
		w.report.Chain, w.report.Duplicates = chain, dups[chain]
		for i, it := range items {
			if i > 0 && it.seq == items[i-1].seq && it.valid && items[i-1].valid {
				w.fail(it.seq, it.m.where(), "fork: another entry with this seq at %s", items[i-1].m.where())
				break
			}
			if !w.Add(it.m.Value, it.m.where()) {
				break
			}
		}
		var h *Head
		for _, hd := range heads {
			if hd != nil && hd.Chain == chain {
				h = hd
			}
		}
		r := w.Finish(h, "head")
		if b := reordered[chain]; b != nil {
			r.Breaks = append([]Break{*b}, r.Breaks...)
			if r.Break == nil || b.Seq < r.Break.Seq {
				r.Break = b
			}
		}
		reports = append(reports, r)
	}
	for _, hd := range heads {
		if hd != nil && !slices.Contains(order, hd.Chain) {
			b := Break{Seq: hd.Seq, Where: "head", Problem: "the signed head's chain has no entry in the topic"}
			reports = append(reports, Report{Chain: hd.Chain, Break: &b, Breaks: []Break{b}})
		}
	}
	return reports
}

// lenient reads what it can of a line that does not verify: all of it if it is still JSON, else the chain and
// seq from the fixed prefix the spool writes, so that a damaged entry is reported in its place in its chain.
func lenient(b []byte) Entry {
	var e Entry
	if json.Unmarshal(b, &e) == nil {
		return e
	}
	rest, ok := bytes.CutPrefix(b, []byte(`{"chain":"`))
	if !ok {
		return Entry{}
	}
	chain, rest, ok := bytes.Cut(rest, []byte(`","seq":`))
	if !ok {
		return Entry{}
	}
	seq, _, ok := bytes.Cut(rest, []byte(","))
	n, err := strconv.ParseUint(string(seq), 10, 64)
	if !ok || err != nil {
		return Entry{}
	}
	return Entry{Chain: string(chain), Seq: n}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ReadSpool calls fn with every complete line of a spool directory's segments, oldest first (the spool may be
// in use: what is being written now is left for the next read).
func ReadSpool(dir string, fn func(raw []byte, where string) error) error {
	names, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("%s: no segments (*%s): not a spool directory?", dir, segSuffix)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := readEntryLines(n, fn); err != nil {
			return err
		}
	}
	return nil
}

func readEntryLines(path string, fn func(raw []byte, where string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	sc.Split(scanLinesKeepEnd)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if !bytes.HasSuffix(line, []byte("\n")) {
			break
		}
		if err := fn(line[:len(line)-1], fmt.Sprintf("%s line %d", filepath.Base(path), n)); err != nil {
			return err
		}
	}
	return sc.Err()
}

// ReadFile calls fn with every line of a JSON-lines file of entries (an export, a SIEM extract).
func ReadFile(path string, fn func(raw []byte, where string) error) error {
	return readEntryLines(path, fn)
}
