package audit

import (
	"bytes"
	"context"
	"io"
	"os"
	"slices"
)

// Reader reads the spool's durable entries in seq order; the shipper uses one.
type Reader struct {
	s    *Spool
	next uint64 // the seq to return next
	seg  uint64 // first seq of the open segment
	off  int64
	f    *os.File
	buf  []byte
}

// Line is one entry as read: Raw is the exact sealed line (no newline), the Kafka message value. Err is set
// when the line does not verify; Entry.Seq is then where it was found.
type Line struct {
	Entry Entry
	Raw   []byte
	Err   error
}

// NewReader starts after the last acknowledged entry.
func (s *Spool) NewReader() *Reader {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Reader{s: s, next: s.cursor + 1}
}

const readChunk = 1 << 20

// Next returns up to max durable entries (and about maxBytes), waiting until there is at least one.
func (r *Reader) Next(ctx context.Context, max, maxBytes int) ([]Line, error) {
	for {
		r.s.mu.Lock()
		segs, durable, changed := slices.Clone(r.s.segs), r.s.durable, r.s.changed
		r.s.mu.Unlock()
		if r.next <= durable {
			lines, more, err := r.read(segs, max, maxBytes)
			if err != nil || len(lines) > 0 {
				return lines, err
			}
			if more {
				continue
			}
		}
		select {
		case <-changed:
		case <-r.s.stopped:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// read returns the entries available in the current segment; more reports that it moved to the next segment.
func (r *Reader) read(segs []segment, maxN, maxBytes int) ([]Line, bool, error) {
	i := slices.IndexFunc(segs, func(s segment) bool { return s.first == r.seg })
	if r.f == nil || i < 0 {
		if r.f != nil {
			r.f.Close()
			r.f = nil
		}
		i = 0
		for j, sg := range segs {
			if sg.first <= r.next {
				i = j
			}
		}
		if r.next < segs[0].first { // trimmed before we got there (cursor file lost): start at what is left
			r.next = segs[0].first
		}
		f, err := os.Open(segs[i].path)
		if err != nil {
			return nil, false, err
		}
		r.f, r.seg, r.off = f, segs[i].first, 0
	}
	limit := segs[i].size // durable bytes: sizes are updated only after fsync
	var out []Line
	size := 0
	for r.off < limit && len(out) < maxN && size < maxBytes {
		n := min(limit-r.off, max(readChunk, int64(cap(r.buf))))
		if int64(cap(r.buf)) < n {
			r.buf = make([]byte, n)
		}
		b := r.buf[:n]
		if _, err := r.f.ReadAt(b, r.off); err != nil && err != io.EOF {
			return out, false, err
		}
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			if n == limit-r.off { // the durable end is mid-line: cannot happen, sizes end at newlines
				break
			}
			r.buf = make([]byte, 2*n) // a line longer than the chunk: read more next time round
			continue
		}
		for nl >= 0 && len(out) < maxN && size < maxBytes {
			raw := b[:nl]
			r.off += int64(nl + 1)
			b = b[nl+1:]
			e, err := ParseLine(raw)
			if err != nil {
				e = Entry{Seq: r.next}
			}
			if err == nil && e.Seq < r.next { // skipping to where we start
				nl = bytes.IndexByte(b, '\n')
				continue
			}
			out = append(out, Line{Entry: e, Raw: bytes.Clone(raw), Err: err})
			r.next = e.Seq + 1
			size += len(raw)
			nl = bytes.IndexByte(b, '\n')
		}
	}
	if len(out) == 0 && r.off >= limit && i < len(segs)-1 {
		r.f.Close()
		r.f = nil
		r.next = max(r.next, segs[i+1].first)
		return nil, true, nil
	}
	return out, false, nil
}
