package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spool is the audit log on local disk: append-only segment files of sealed lines. Write returns only once
// the record is fsync'd, so a request is answered only after its record is durable; concurrent writers share
// one fsync (group commit). A shipper reads committed lines with a Reader and calls Ack once Kafka has them;
// only then are whole segments deleted. When the segments reach the disk budget, Write fails with ErrFull and
// the request is refused: fhirwall never serves unaudited.
//
// Files in the spool directory:
//
//	<first seq, 20 digits>.seg   segments, oldest first; the last one is appended to
//	head.json                    the signed chain head after the latest commit (see Head)
//	cursor.json                  the highest seq Kafka acknowledged
//	LOCK                         flock'd by the one process that owns the spool
type Spool struct {
	dir   string
	opt   Options
	keyID string

	reqs    chan *pending
	closing chan struct{}
	stopped chan struct{}

	mu      sync.Mutex // guards the fields below; the writer goroutine alone appends
	segs    []segment  // oldest first; the last is the active segment
	total   int64      // bytes in segs
	durable uint64     // the last fsync'd seq
	cursor  uint64     // the last seq Kafka acknowledged
	failed  error      // sticky: after a failed write or fsync nothing more is written
	full    bool       // a record was refused for the budget since the last trim
	changed chan struct{}

	// Writer state (the writer goroutine, or Open before it starts).
	f             *os.File
	lock          *os.File
	chain         string
	seq           uint64
	prev          string
	sinceCkpt     int
	lastCkpt      time.Time
	headTmp, head string
	// The signed head is written by its own goroutine, off the commit path: heads carries the latest one
	// (a newer head replaces one not yet written), headsDone closes when that goroutine has finished.
	heads     chan Head
	headsDone chan struct{}
}

type segment struct {
	first, last uint64 // last is 0 while the segment has no entry
	path        string
	size        int64
}

// Options configure a spool. Zero values take the defaults in brackets.
type Options struct {
	Key                ed25519.PrivateKey // signs checkpoints and the head; required
	MaxBytes           int64              // disk budget for segments [1 GiB]
	SegmentBytes       int64              // a segment is closed past this size [16 MiB]
	CheckpointEvery    int                // records between checkpoints [1000]
	CheckpointInterval time.Duration      // longest time between checkpoints while records arrive [10 s]
	MaxBatch           int                // records per group commit [512]
	// PartPatientBytes bounds the encoded patient list of one record [DefaultPartPatientBytes]: a record
	// naming more is written as several records (parts) of at most this much each; see Write.
	PartPatientBytes int
	Now              func() time.Time
	Log              *slog.Logger
}

func (o *Options) defaults() error {
	if len(o.Key) != ed25519.PrivateKeySize {
		return errors.New("audit spool: an ed25519 signing key is required (audit.signing_key_file; create one with `fhirwall audit keygen`)")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 16 << 20
	}
	// Only whole segments are freed, and never the one being written: with segments near the budget, an
	// acknowledged spool could stay full.
	o.SegmentBytes = min(o.SegmentBytes, o.MaxBytes/4)
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 1000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 10 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.PartPatientBytes <= 0 || o.PartPatientBytes > DefaultPartPatientBytes {
		o.PartPatientBytes = DefaultPartPatientBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Errors of the spool. ErrFull, ErrClosed and ErrTooLarge refuse the request; the caller answers 503.
var (
	ErrFull     = errors.New("audit spool: disk budget exhausted (Kafka behind?)")
	ErrClosed   = errors.New("audit spool: closed")
	ErrTooLarge = errors.New("audit spool: entry larger than audit.MaxEntryBytes")
)

// Sizes of entries. Every reader and the topic are sized for MaxEntryBytes (docs/audit/README.md, "The pipeline": sizes):
// the spool refuses to seal a longer line, so no entry can stop the shipper. Only the patient list can grow
// with the data served (a bulk export naming 50,000 members); it is split into parts of at most
// DefaultPartPatientBytes, which keeps a part of an ordinary record under Kafka's default 1 MB message size
// too. Everything else in a record is bounded by what Envoy lets into a request (path, query, headers).
const (
	MaxEntryBytes           = 16 << 20
	DefaultPartPatientBytes = 512 << 10
	// sealOverhead is the most seal adds to a body: chain id (a 32-hex NewID, quoted, with room for a longer
	// one), seq, prev_hash and hash members.
	sealOverhead = 512
)

// pending is one request to the writer: record bodies to seal one after another (a record split in parts is
// sealed whole or not at all), or (reason set) a checkpoint to add.
type pending struct {
	bodies [][]byte
	reason string
	done   chan error
}

const (
	segSuffix  = ".seg"
	headFile   = "head.json"
	cursorFile = "cursor.json"
)

// Open opens (or creates) the spool in dir, recovers from a crash — an incomplete last line, never
// acknowledged to anyone, is cut off — and continues the chain found there. It refuses a spool whose signed
// head is ahead of its log: records were removed, and `fhirwall audit verify` should look before anything
// is appended.
func Open(dir string, opt Options) (*Spool, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	s := &Spool{dir: dir, opt: opt, keyID: KeyID(opt.Key.Public().(ed25519.PublicKey)),
		reqs: make(chan *pending, 4*opt.MaxBatch), closing: make(chan struct{}), stopped: make(chan struct{}),
		changed: make(chan struct{}), head: filepath.Join(dir, headFile), headTmp: filepath.Join(dir, headFile+".tmp"),
		heads: make(chan Head, 1), headsDone: make(chan struct{})}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("audit spool: %s is in use by another process (%v)", dir, err)
	}
	s.lock = lock
	if err := s.recover(); err != nil {
		s.f.Close()
		lock.Close()
		return nil, err
	}
	go s.run()
	go s.headWriter()
	// A start checkpoint marks the restart in the chain and signs the head it continues from.
	if err := s.checkpointNow(context.Background(), "start"); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Spool) recover() error {
	names, err := filepath.Glob(filepath.Join(s.dir, "*"+segSuffix))
	if err != nil {
		return err
	}
	slices.Sort(names) // zero-padded first seq: name order is seq order
	for _, n := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(n), segSuffix), 10, 64)
		if err != nil {
			return fmt.Errorf("audit spool: unexpected file %s", n)
		}
		st, err := os.Stat(n)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, segment{first: first, path: n, size: st.Size()})
	}
	// The last line of each segment gives its last seq (for trimming) and, for the newest, the chain head.
	var last *Entry
	for i := range s.segs {
		e, err := s.lastEntry(&s.segs[i], i == len(s.segs)-1)
		if err != nil {
			return err
		}
		if e != nil {
			s.segs[i].last = e.Seq
			last = e
		}
		s.total += s.segs[i].size
	}
	if last == nil {
		s.chain, s.seq, s.prev = NewID(), 0, GenesisHash
	} else {
		s.chain, s.seq, s.prev = last.Chain, last.Seq, last.Hash
	}
	if h, err := readJSON[Head](s.head); err == nil {
		if h.Verify(s.opt.Key.Public().(ed25519.PublicKey)) == nil && h.Chain == s.chain && h.Seq > s.seq {
			return fmt.Errorf("audit spool: the signed head is at seq %d but the log ends at seq %d: records were removed from %s; run `fhirwall audit verify -spool %s`, and move the directory aside to start a new chain", h.Seq, s.seq, s.dir, s.dir)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		s.opt.Log.Warn("audit spool: unreadable head (after a crash it may be empty); continuing from the log", "err", err)
	}
	if c, err := readJSON[struct{ Seq uint64 }](filepath.Join(s.dir, cursorFile)); err == nil {
		s.cursor = min(c.Seq, s.seq)
	} else if !errors.Is(err, os.ErrNotExist) {
		s.opt.Log.Warn("audit spool: unreadable cursor; shipping again from the oldest segment (consumers drop duplicates by id)", "err", err)
	}
	s.durable = s.seq
	s.lastCkpt = s.opt.Now()
	if len(s.segs) == 0 {
		return s.newSegment(s.seq + 1)
	}
	act := &s.segs[len(s.segs)-1]
	f, err := os.OpenFile(act.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

// lastEntry returns the last complete entry of seg (nil if it has none), reading only the segment's tail: a
// start must not read the whole spool. In the active segment an incomplete last line — a write cut short by
// a crash, whose fsync never returned — is truncated away.
func (s *Spool) lastEntry(seg *segment, active bool) (*Entry, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	end := seg.size
	nl, err := lastNewline(f, end)
	if err != nil {
		return nil, err
	}
	if end > 0 && nl != end-1 {
		if !active {
			return nil, fmt.Errorf("audit spool: %s ends in an incomplete line but is not the newest segment; run `fhirwall audit verify -spool %s`", seg.path, s.dir)
		}
		s.opt.Log.Warn("audit spool: cutting an incomplete line left by a crash (never acknowledged)", "segment", seg.path, "bytes", end-nl-1)
		if err := os.Truncate(seg.path, nl+1); err != nil {
			return nil, err
		}
		end, seg.size = nl+1, nl+1
	}
	if end == 0 {
		return nil, nil
	}
	start, err := lastNewline(f, end-1)
	if err != nil {
		return nil, err
	}
	line := make([]byte, end-start-1)
	if _, err := f.ReadAt(line, start+1); err != nil {
		return nil, err
	}
	e, err := ParseLine(line)
	if err != nil {
		return nil, fmt.Errorf("audit spool: the last entry of %s does not verify (%v); run `fhirwall audit verify -spool %s`", seg.path, err, s.dir)
	}
	return &e, nil
}

// lastNewline returns the offset of the last '\n' in f before offset before, or -1, reading backwards.
func lastNewline(f *os.File, before int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := before; end > 0; {
		start := max(end-int64(len(buf)), 0)
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return start + int64(i), nil
		}
		end = start
	}
	return -1, nil
}

func readJSON[T any](path string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal(b, &v)
}

// newSegment starts a segment whose first entry will be seq; the directory is fsync'd so the file survives.
func (s *Spool) newSegment(first uint64) error {
	path := filepath.Join(s.dir, fmt.Sprintf("%020d%s", first, segSuffix))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f = f
	s.mu.Lock()
	s.segs = append(s.segs, segment{first: first, path: path})
	s.mu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Write seals r into the chain and returns once it is on disk (decision.Sink). The chain members of r are
// set by the spool; whatever the caller put there is ignored.
//
// A record whose patient list encodes to more than Options.PartPatientBytes is written as Parts records, one
// per slice of the list in its order, each complete (every other member repeated) and verifiable on its
// own: part n has id "<r.ID>-<n>", SplitID r.ID, Part n and Parts. The parts are sealed one after another in
// one group commit: all are durable when Write returns nil, none is written when it fails. An entry longer
// than MaxEntryBytes, split or not, is refused with ErrTooLarge and the request with it (fail closed: it
// could never be shipped).
func (s *Spool) Write(ctx context.Context, r Record) error {
	r.Chain, r.Seq, r.PrevHash, r.Hash = "", 0, "", ""
	r.SplitID, r.Part, r.Parts = "", 0, 0
	if r.Kind == "" {
		r.Kind = KindAccess
	}
	if r.Schema == "" {
		r.Schema = SchemaVersion
	}
	var bodies [][]byte
	if r.Kind == KindAdmin {
		body, err := r.encode()
		if err != nil {
			return err
		}
		bodies = [][]byte{body}
	} else {
		lists := SplitPatients(r.Patients, s.opt.PartPatientBytes)
		for i, l := range lists {
			p := r
			p.Patients = l
			if len(lists) > 1 {
				p.ID, p.SplitID, p.Part, p.Parts = fmt.Sprintf("%s-%d", r.ID, i+1), r.ID, i+1, len(lists)
			}
			body, err := p.encode()
			if err != nil {
				return err
			}
			bodies = append(bodies, body)
		}
	}
	for _, b := range bodies {
		if len(b)+sealOverhead > MaxEntryBytes {
			return fmt.Errorf("%w: record %s encodes to %d bytes (at most %d)", ErrTooLarge, r.ID, len(b), MaxEntryBytes-sealOverhead)
		}
	}
	return s.submit(ctx, &pending{bodies: bodies})
}

// SplitPatients cuts a patient list into consecutive slices whose JSON encoding (as in a record:
// ["a","b"]) is at most maxBytes each; a single patient longer than that gets a slice of its own. An empty
// or short enough list is one slice, the list itself.
func SplitPatients(patients []string, maxBytes int) [][]string {
	var out [][]string
	start, size := 0, 2 // []
	for i, p := range patients {
		b, _ := json.Marshal(p)
		n := len(b) + 1 // the comma
		if i > start && size+n > maxBytes {
			out = append(out, patients[start:i:i])
			start, size = i, 2
		}
		size += n
	}
	return append(out, patients[start:])
}

func (s *Spool) submit(ctx context.Context, p *pending) error {
	p.done = make(chan error, 1)
	select {
	case s.reqs <- p:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("audit spool: %w", ctx.Err())
	}
	select {
	case err := <-p.done:
		return err
	case <-s.stopped: // queued after the writer's last drain
		select {
		case err := <-p.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		// The record may still become durable: an extra record of a refused request, never a missing one.
		return fmt.Errorf("audit spool: %w", ctx.Err())
	}
}

// checkpointNow adds a checkpoint through the writer's queue and waits for it to be durable.
func (s *Spool) checkpointNow(ctx context.Context, reason string) error {
	return s.submit(ctx, &pending{reason: reason})
}

func (s *Spool) run() {
	defer close(s.stopped)
	tick := time.NewTicker(s.opt.CheckpointInterval)
	defer tick.Stop()
	for {
		var batch []*pending
		select {
		case p := <-s.reqs:
			batch = append(batch, p)
		case <-tick.C:
			if s.sinceCkpt > 0 && s.opt.Now().Sub(s.lastCkpt) >= s.opt.CheckpointInterval {
				s.commit(nil, "periodic")
			}
			continue
		case <-s.closing:
			// Drain what was queued before Close, then sign off.
			for {
				select {
				case p := <-s.reqs:
					batch = append(batch, p)
					continue
				default:
				}
				break
			}
			s.commit(batch, "stop")
			return
		}
	drain:
		for len(batch) < s.opt.MaxBatch {
			select {
			case p := <-s.reqs:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		s.commit(batch, "")
	}
}

// commit appends a batch with one write and one fsync, adding a checkpoint when one is due (or reason asks
// for one), then answers every writer.
func (s *Spool) commit(batch []*pending, reason string) {
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	if failed != nil {
		for _, p := range batch {
			p.done <- failed
		}
		return
	}
	var buf []byte
	var accepted, ckptReqs []*pending
	seq, prev, since := s.seq, s.prev, s.sinceCkpt
	firstSeq := seq + 1
	for _, p := range batch {
		if p.reason != "" {
			reason = p.reason
			ckptReqs = append(ckptReqs, p)
			continue
		}
		// Every body of p, or none: the parts of a split record are sealed consecutively.
		pbuf, pseq, pprev := buf, seq, prev
		var err error
		for _, body := range p.bodies {
			var line []byte
			var h string
			if line, h, err = seal(body, s.chain, pseq+1, pprev); err != nil {
				break
			}
			if s.total+int64(len(pbuf)+len(line)+1) > s.opt.MaxBytes {
				s.mu.Lock()
				s.full = true
				s.mu.Unlock()
				err = ErrFull
				break
			}
			pseq, pprev = pseq+1, h
			pbuf = append(append(pbuf, line...), '\n')
		}
		if err != nil {
			p.done <- err
			continue
		}
		since += int(pseq - seq)
		buf, seq, prev = pbuf, pseq, pprev
		accepted = append(accepted, p)
	}
	now := s.opt.Now()
	if reason != "" || since >= s.opt.CheckpointEvery || (since > 0 && now.Sub(s.lastCkpt) >= s.opt.CheckpointInterval) {
		if reason == "" {
			reason = "periodic"
		}
		c := Checkpoint{Schema: SchemaVersion, Kind: KindCheckpoint, ID: NewID(), Time: now.UTC(), Reason: reason,
			KeyID: s.keyID, Signature: sign(s.opt.Key, CheckpointStatement(s.chain, seq+1, prev))}
		body, _ := json.Marshal(c)
		line, h, _ := seal(body, s.chain, seq+1, prev)
		seq, prev, since = seq+1, h, 0
		buf = append(append(buf, line...), '\n')
		s.lastCkpt = now
	}
	err := s.append(buf, firstSeq)
	if err != nil {
		err = fmt.Errorf("audit spool: %w", err)
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
		s.opt.Log.Error("audit spool: write failed; refusing every request until restarted", "err", err)
	} else if len(buf) > 0 {
		s.seq, s.prev, s.sinceCkpt = seq, prev, since
		s.mu.Lock()
		act := &s.segs[len(s.segs)-1]
		act.size += int64(len(buf))
		act.last = seq
		s.total += int64(len(buf))
		s.durable = seq
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	for _, p := range append(accepted, ckptReqs...) {
		p.done <- err
	}
	if err == nil && len(buf) > 0 {
		s.publishHead(now)
	}
}

// append writes buf (entries from seq first on) to the active segment, starting a new one when it is full.
func (s *Spool) append(buf []byte, first uint64) error {
	if len(buf) == 0 {
		return nil
	}
	s.mu.Lock()
	act := s.segs[len(s.segs)-1]
	s.mu.Unlock()
	if act.size > 0 && act.size+int64(len(buf)) > s.opt.SegmentBytes {
		if err := s.newSegment(first); err != nil {
			return err
		}
	}
	if _, err := s.f.Write(buf); err != nil {
		return err
	}
	return s.f.Sync()
}

// publishHead hands the head just committed to headWriter, replacing one not yet written; it is signed there,
// only when written.
func (s *Spool) publishHead(now time.Time) {
	h := Head{Chain: s.chain, Seq: s.seq, Hash: s.prev, Time: now.UTC(), KeyID: s.keyID}
	for {
		select {
		case s.heads <- h:
			return
		default:
		}
		select {
		case <-s.heads: // superseded
		default:
		}
	}
}

// headInterval is the least time between two head writes: under load a commit every few hundred
// microseconds would rewrite head.json as often; the latest head wins, at most this much later.
const headInterval = 50 * time.Millisecond

// headWriter writes each published head until the writer goroutine has stopped, then the last one.
func (s *Spool) headWriter() {
	defer close(s.headsDone)
	for {
		select {
		case h := <-s.heads:
			s.writeHead(h)
			select {
			case <-time.After(headInterval):
			case <-s.stopped:
			}
		case <-s.stopped:
			select {
			case h := <-s.heads:
				s.writeHead(h)
			default:
			}
			return
		}
	}
}

func (s *Spool) writeHead(h Head) {
	h.Signature = sign(s.opt.Key, HeadStatement(h.Chain, h.Seq, h.Hash))
	b, _ := json.Marshal(h)
	// Not fsync'd: after a crash the head may lag the log, never lead it (it is published after the fsync).
	if err := os.WriteFile(s.headTmp, b, 0o600); err == nil {
		err = os.Rename(s.headTmp, s.head)
		if err != nil {
			s.opt.Log.Warn("audit spool: head not updated", "err", err)
		}
	}
}

// Ack records that every entry up to seq is in Kafka: the cursor is persisted, and segments holding only
// acknowledged entries are deleted (never the active one).
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.durable {
		return fmt.Errorf("audit spool: ack of seq %d beyond the log (%d)", seq, s.durable)
	}
	if seq <= s.cursor {
		return nil
	}
	s.cursor = seq
	b, _ := json.Marshal(struct{ Seq uint64 }{seq})
	tmp := filepath.Join(s.dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, cursorFile)); err != nil {
		return err
	}
	for len(s.segs) > 1 && s.segs[0].last != 0 && s.segs[0].last <= seq {
		if err := os.Remove(s.segs[0].path); err != nil {
			return err
		}
		s.total -= s.segs[0].size
		s.segs = s.segs[1:]
		s.full = false
	}
	return nil
}

// Stats is the spool's state for metrics and readiness.
type Stats struct {
	Bytes, Budget   int64
	Durable, Cursor uint64 // Durable - Cursor is the shipping lag in entries
	Segments        int
	Full            bool // a record was refused for the budget since the last trim
	Failed          error
}

// Stats returns the current state.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Bytes: s.total, Budget: s.opt.MaxBytes, Durable: s.durable, Cursor: s.cursor, Segments: len(s.segs), Full: s.full, Failed: s.failed}
}

// Ready fails when the spool cannot take a record: a failed write, or the budget (nearly) exhausted.
func (s *Spool) Ready(context.Context) error {
	st := s.Stats()
	if st.Failed != nil {
		return st.Failed
	}
	if st.Full || st.Bytes >= st.Budget-st.Budget/100 {
		return ErrFull
	}
	return nil
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Close commits what is queued, appends a stop checkpoint and releases the spool. Writes after Close fail
// with ErrClosed.
func (s *Spool) Close() error {
	select {
	case <-s.closing:
		return nil
	default:
	}
	close(s.closing)
	<-s.stopped
	<-s.headsDone
	s.mu.Lock()
	err := s.failed
	s.mu.Unlock()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.lock.Close()
	return err
}
