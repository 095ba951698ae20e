// Package jsonenc appends JSON values to a byte slice exactly as encoding/json's Marshal writes them, for
// the encoders on the request path that must not pay for reflection yet must not change a byte (the audit
// record, hash-chained; the carried decision). Where encoding/json would fail (a NaN, a time outside RFC
// 3339), the appender says so and the caller hands the value to encoding/json for its error.
package jsonenc

import (
	"encoding/base64"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Time is time.Time.MarshalJSON without its allocation; false where MarshalJSON fails (a year outside
// 0-9999, a zone offset of 24 hours or more), so encoding/json reports the error.
func Time(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	if len(b)-n0 < len("2006-01-02T15:04:05Z") || b[n0+4] != '-' {
		return b, false
	}
	if b[len(b)-1] != 'Z' {
		c := b[len(b)-len("Z07:00")]
		h := 10*int(b[len(b)-5]-'0') + int(b[len(b)-4]-'0')
		if ('0' <= c && c <= '9') || h >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}

// Float64 is encoding/json's float64 encoding (ES6 number formatting); false for NaN and ±Inf, which
// encoding/json refuses.
func Float64(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 → e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// Strings writes a []string as encoding/json does: null when nil.
func Strings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// String is encoding/json's string encoding with HTML escaping (json.Marshal's default): <, > and &
// as \u003c \u003e \u0026, control characters escaped, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func String(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Bytes writes a []byte as encoding/json does: standard base64 in a string, null when nil.
func Bytes(b []byte, p []byte) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// StringsMap writes a map[string][]string (url.Values, http.Header, a granular constraint) as encoding/json
// does: keys sorted, null when nil, each value as Strings.
func StringsMap[M ~map[string][]string](b []byte, m M) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) { // encoding/json's order: byte-wise
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, k)
		b = append(b, ':')
		b = Strings(b, m[k])
	}
	return append(b, '}')
}

// Scratch lends the buffers a hand encoder builds a value in before copying it out or handing it on; a
// buffer grown past max (a record with a very long list) is dropped rather than kept in the pool.
type Scratch struct {
	pool sync.Pool
	max  int
}

// NewScratch makes buffers of capacity size, kept up to capacity max.
func NewScratch(size, max int) *Scratch {
	s := &Scratch{max: max}
	s.pool.New = func() any { b := make([]byte, 0, size); return &b }
	return s
}

// Get lends an empty buffer; give it back with Put.
func (s *Scratch) Get() *[]byte {
	bp := s.pool.Get().(*[]byte)
	*bp = (*bp)[:0]
	return bp
}

// Put takes back bp, with b (what was appended to it) as its storage from now on; nothing of b may be used
// after.
func (s *Scratch) Put(bp *[]byte, b []byte) {
	if cap(b) <= s.max {
		*bp = b[:0]
		s.pool.Put(bp)
	}
}
