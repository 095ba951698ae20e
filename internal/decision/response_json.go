package decision

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is enforcement's JSON reader and writer. The reader accepts exactly what encoding/json's
// Decoder (UseNumber, into map[string]any, then nothing but whitespace) accepts and yields the same values
// (duplicate keys: the last wins; invalid UTF-8 and lone surrogates: U+FFFD; numbers as written; nesting past
// 10,000: refused; a BOM or trailing data: refused), in one pass with no reflection, members gathered on a
// stack so each map and slice is allocated once at its final size, keys and strings without escapes sliced
// out of one copy of the body rather than copied one by one, and repeated short values (codes, systems)
// boxed once per answer. A parser that accepted what the reference refuses, or read a value
// differently, would let the checks see another resource than the client gets: FuzzDecodeDifferential and
// FuzzEnforceDifferential hold it to encoding/json (response_json_test.go).

// maxJSONDepth is encoding/json's scanner limit (maxNestingDepth): the 10,001st open bracket is refused.
const maxJSONDepth = 10000

// Short values repeat in an answer (codes, systems, units, references to the same patient): the reader keeps
// the last internSlots of them, by hash, and hands out the same boxed value again rather than a new box. A
// slot is used only when its bytes are equal, so a collision costs an allocation, never a value.
const (
	internMaxLen = 128 // system URLs (http://terminology.hl7.org/CodeSystem/…) are 40 to 80 bytes
	internSlots  = 1024
)

type internSlot struct {
	s string
	v any // s boxed once, as a string or a json.Number
}

type jsonMember struct {
	key string
	val any
}

type jsonReader struct {
	data []byte
	// str is data as one string, copied once: plain keys and values are substrings of it, so the decoded
	// resource holds the body's copy until the last of them goes (callers that keep a value past the answer
	// clone it: response.go's patients and paging ids).
	str     string
	pos     int
	depth   int
	members []jsonMember
	items   []any
	seed    maphash.Seed
	strs    *[internSlots]internSlot
	nums    *[internSlots]internSlot
	buf     []byte // unescaping scratch
	// used lists the slots of strs and nums this answer filled, so reset clears those rather than both
	// whole tables (64 KB) after every answer.
	usedStrs, usedNums []uint16
	// slab is where the answer's short arrays are cut from, each capped at its length so that an append to
	// one (enforcement filtering entries) reallocates rather than writes into its neighbour.
	slab []any
}

// Arrays of up to slabMaxItems elements come from slabs of slabItems; most FHIR arrays hold one or two.
const (
	slabItems    = 256
	slabMaxItems = 32
)

var jsonReaders = sync.Pool{New: func() any {
	return &jsonReader{seed: maphash.MakeSeed(), strs: new([internSlots]internSlot), nums: new([internSlots]internSlot)}
}}

var errJSONSyntax = errors.New("invalid JSON")

// decodeResource decodes a JSON object, keeping numbers as written (FHIR decimals carry their precision).
func decodeResource(body []byte) (map[string]any, error) {
	r := jsonReaders.Get().(*jsonReader)
	m, err := r.document(body)
	r.reset()
	jsonReaders.Put(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	if _, ok := m["resourceType"].(string); !ok {
		return nil, fmt.Errorf("%w: no resourceType", ErrResponse)
	}
	return m, nil
}

// reset drops every reference into the last answer, so a pooled reader holds nothing of it.
func (r *jsonReader) reset() {
	r.data, r.str = nil, ""
	clear(r.members[:cap(r.members)])
	r.members = r.members[:0]
	clear(r.items[:cap(r.items)])
	r.items = r.items[:0]
	for _, i := range r.usedStrs {
		r.strs[i] = internSlot{}
	}
	for _, i := range r.usedNums {
		r.nums[i] = internSlot{}
	}
	r.usedStrs, r.usedNums = r.usedStrs[:0], r.usedNums[:0]
	r.slab = nil // the rest of the slab belongs to the last answer's arrays
}

// intern returns the boxed value for the body's bytes [start, end) from table, making it with box on a miss.
func (r *jsonReader) intern(table *[internSlots]internSlot, used *[]uint16, start, end int, box func(string) any) any {
	i := maphash.Bytes(r.seed, r.data[start:end]) & (internSlots - 1)
	slot := &table[i]
	if slot.v == nil {
		*used = append(*used, uint16(i))
	} else if slot.s == r.str[start:end] {
		return slot.v
	}
	s := r.str[start:end]
	slot.s, slot.v = s, box(s)
	return slot.v
}

func boxString(s string) any { return s }
func boxNumber(s string) any { return json.Number(s) }

// document reads one object followed by nothing but whitespace. Any other value at the top (null, an array)
// is "not a resource", as encoding/json into a map either refuses it or leaves the map nil.
func (r *jsonReader) document(body []byte) (map[string]any, error) {
	r.data, r.pos, r.depth = body, 0, 0
	r.space()
	if r.pos < len(r.data) && r.data[r.pos] == '{' {
		r.str = string(body)
	}
	if r.pos >= len(r.data) || r.data[r.pos] != '{' {
		return nil, errors.New("not a resource")
	}
	m, err := r.object()
	if err != nil {
		return nil, err
	}
	r.space()
	if r.pos != len(r.data) {
		return nil, errors.New("data after the resource")
	}
	return m, nil
}

// space skips JSON whitespace (RFC 8259 §2: space, tab, LF, CR; encoding/json's isSpace).
func (r *jsonReader) space() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

func (r *jsonReader) syntax(what string) error {
	return fmt.Errorf("%w at offset %d: %s", errJSONSyntax, r.pos, what)
}

func (r *jsonReader) value() (any, error) {
	if r.pos >= len(r.data) {
		return nil, r.syntax("unexpected end")
	}
	switch c := r.data[r.pos]; {
	case c == '{':
		m, err := r.object()
		return m, err
	case c == '[':
		return r.array()
	case c == '"':
		return r.stringValue()
	case c == 't':
		return true, r.literal("true")
	case c == 'f':
		return false, r.literal("false")
	case c == 'n':
		return nil, r.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return r.number()
	}
	return nil, r.syntax("looking for beginning of value")
}

func (r *jsonReader) literal(lit string) error {
	if len(r.data)-r.pos < len(lit) || string(r.data[r.pos:r.pos+len(lit)]) != lit {
		return r.syntax("in literal")
	}
	r.pos += len(lit)
	return nil
}

func (r *jsonReader) open() error {
	r.depth++
	if r.depth > maxJSONDepth {
		return r.syntax("exceeded max depth")
	}
	r.pos++
	r.space()
	return nil
}

func (r *jsonReader) object() (map[string]any, error) {
	if err := r.open(); err != nil {
		return nil, err
	}
	base := len(r.members)
	if r.pos < len(r.data) && r.data[r.pos] == '}' {
		r.pos++
		r.depth--
		return map[string]any{}, nil
	}
	for {
		if r.pos >= len(r.data) || r.data[r.pos] != '"' {
			return nil, r.syntax("looking for beginning of object key string")
		}
		key, err := r.key()
		if err != nil {
			return nil, err
		}
		r.space()
		if r.pos >= len(r.data) || r.data[r.pos] != ':' {
			return nil, r.syntax("after object key")
		}
		r.pos++
		r.space()
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		r.members = append(r.members, jsonMember{key, v})
		r.space()
		if r.pos >= len(r.data) {
			return nil, r.syntax("unexpected end")
		}
		c := r.data[r.pos]
		r.pos++
		if c == '}' {
			break
		}
		if c != ',' {
			return nil, r.syntax("after object key:value pair")
		}
		r.space()
	}
	members := r.members[base:]
	m := make(map[string]any, len(members))
	for _, kv := range members {
		m[kv.key] = kv.val // a repeated key: the last one wins, as in encoding/json
	}
	r.members = r.members[:base] // not cleared here: overwritten by the next object, cleared by reset
	r.depth--
	return m, nil
}

func (r *jsonReader) array() (any, error) {
	if err := r.open(); err != nil {
		return nil, err
	}
	base := len(r.items)
	if r.pos < len(r.data) && r.data[r.pos] == ']' {
		r.pos++
		r.depth--
		return []any{}, nil
	}
	for {
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		r.items = append(r.items, v)
		r.space()
		if r.pos >= len(r.data) {
			return nil, r.syntax("unexpected end")
		}
		c := r.data[r.pos]
		r.pos++
		if c == ']' {
			break
		}
		if c != ',' {
			return nil, r.syntax("after array element")
		}
		r.space()
	}
	items := r.items[base:]
	var out []any
	if n := len(items); n > slabMaxItems {
		out = make([]any, n)
	} else {
		if len(r.slab) < n {
			r.slab = make([]any, slabItems)
		}
		out, r.slab = r.slab[:n:n], r.slab[n:]
	}
	copy(out, items)
	r.items = r.items[:base]
	r.depth--
	return out, nil
}

// number reads RFC 8259 §6's grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, as json.Number.
func (r *jsonReader) number() (any, error) {
	d, start := r.data, r.pos
	i := start
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		r.pos = i
		return nil, r.syntax("in numeric literal")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			r.pos = i
			return nil, r.syntax("after decimal point in numeric literal")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			r.pos = i
			return nil, r.syntax("in exponent of numeric literal")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	r.pos = i
	if i-start <= internMaxLen {
		return r.intern(r.nums, &r.usedNums, start, i, boxNumber), nil
	}
	return json.Number(r.str[start:i]), nil
}

// key reads an object key.
func (r *jsonReader) key() (string, error) {
	raw, plain, err := r.stringToken()
	if err != nil {
		return "", err
	}
	if !plain {
		return string(r.unquote(raw)), nil
	}
	start := r.pos - 1 - len(raw) // raw is followed by the closing quote
	return r.str[start : r.pos-1], nil
}

func (r *jsonReader) stringValue() (any, error) {
	raw, plain, err := r.stringToken()
	if err != nil {
		return nil, err
	}
	if !plain {
		return string(r.unquote(raw)), nil
	}
	start, end := r.pos-1-len(raw), r.pos-1
	if len(raw) <= internMaxLen {
		return r.intern(r.strs, &r.usedStrs, start, end, boxString), nil
	}
	return r.str[start:end], nil
}

// stringToken reads a string literal at r.pos (the opening quote) and returns its raw contents; plain means
// they are the value as they stand (no escape, valid UTF-8). It refuses what encoding/json's scanner refuses:
// a control character, an unknown escape, a \u without four hex digits, no closing quote.
func (r *jsonReader) stringToken() (raw []byte, plain bool, err error) {
	d := r.data
	start := r.pos + 1
	i := start
	plain = true
	ascii := true
	for i < len(d) {
		c := d[i]
		switch {
		case jsonPlain[c]:
			i++
		case c == '"':
			r.pos = i + 1
			if !plain || ascii || utf8.Valid(d[start:i]) {
				return d[start:i], plain, nil
			}
			return d[start:i], false, nil
		case c == '\\':
			plain = false
			if i+1 >= len(d) {
				r.pos = i + 1
				return nil, false, r.syntax("in string escape code")
			}
			switch d[i+1] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					r.pos = i + 2
					return nil, false, r.syntax("in \\u hexadecimal character escape")
				}
				i += 6
			default:
				r.pos = i + 1
				return nil, false, r.syntax("in string escape code")
			}
		case c < 0x20:
			r.pos = i
			return nil, false, r.syntax("in string literal")
		default:
			ascii = false
			i++
		}
	}
	r.pos = i
	return nil, false, r.syntax("unexpected end of string")
}

// jsonEscape is the byte a two-character JSON escape \e stands for; false for \u and anything else.
func jsonEscape(e byte) (byte, bool) {
	switch e {
	case '"', '\\', '/':
		return e, true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	}
	return 0, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// unquote decodes an already validated string body as encoding/json's unquoteBytes does: escapes resolved,
// a surrogate pair joined, a lone surrogate and each invalid UTF-8 byte replaced by U+FFFD.
func (r *jsonReader) unquote(s []byte) []byte {
	b := r.buf[:0]
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			switch e := s[i+1]; e {
			case 'u':
				rr := hex4(s[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(rr) {
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' && isHex(s[i+2]) && isHex(s[i+3]) &&
						isHex(s[i+4]) && isHex(s[i+5]) {
						if dec := utf16.DecodeRune(rr, hex4(s[i+2:i+6])); dec != utf8.RuneError {
							b = utf8.AppendRune(b, dec)
							i += 6
							continue
						}
					}
					rr = utf8.RuneError
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // validated: one of jsonEscape's
				c, _ := jsonEscape(e)
				b = append(b, c)
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			rr, size := utf8.DecodeRune(s[i:])
			b = utf8.AppendRune(b, rr)
			i += size
		}
	}
	r.buf = b
	return b
}

func hex4(s []byte) rune {
	var v rune
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		v = v*16 + rune(c)
	}
	return v
}

// encode writes a decoded resource back as compact JSON with resourceType first in every resource (FHIR
// JSON §1.1: readers may rely on it) and the other members in a stable order; numbers stay as written.
func encode(v any) ([]byte, error) { return encodeSized(v, 0) }

// encodeSized is encode into a buffer for size bytes to start with (the upstream body's length) and some
// room: links rewritten to the public base make a compact answer slightly longer than upstream's, and a
// buffer grown by doubling at the last entry costs twice the answer again.
func encodeSized(v any, size int) ([]byte, error) {
	w := jsonWriters.Get().(*jsonWriter)
	w.b = make([]byte, 0, size+size/16+512)
	err := w.value(v, 0)
	b := w.b
	w.b = nil
	clear(w.members[:cap(w.members)]) // the pooled writer holds nothing of the answer
	w.members = w.members[:0]
	jsonWriters.Put(w)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	return b, nil
}

type jsonWriter struct {
	b       []byte
	members []jsonMember // a stack: each object sorts its members above its parent's
}

var jsonWriters = sync.Pool{New: func() any { return new(jsonWriter) }}

// sortMembers orders an object's members by key (byte order, as slices.Sort on the keys): insertion sort for
// the few members most objects have, without a comparison function call per step.
func sortMembers(ms []jsonMember) {
	if len(ms) > 12 {
		slices.SortFunc(ms, func(a, b jsonMember) int { return strings.Compare(a.key, b.key) })
		return
	}
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].key < ms[j-1].key; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

func (w *jsonWriter) value(v any, depth int) error {
	if depth > 512 {
		return errors.New("nested too deep")
	}
	switch t := v.(type) {
	case map[string]any:
		base := len(w.members)
		var rt any
		typed := false
		for k, v := range t {
			if k == "resourceType" {
				rt, typed = v, true
				continue
			}
			w.members = append(w.members, jsonMember{k, v})
		}
		members := w.members[base:]
		sortMembers(members)
		w.b = append(w.b, '{')
		if typed {
			w.b = append(w.b, `"resourceType":`...)
			if err := w.value(rt, depth+1); err != nil {
				return err
			}
		}
		for i, kv := range members {
			if i > 0 || typed {
				w.b = append(w.b, ',')
			}
			w.b = appendJSONString(w.b, kv.key)
			w.b = append(w.b, ':')
			if err := w.value(kv.val, depth+1); err != nil {
				return err
			}
		}
		w.b = append(w.b, '}')
		w.members = w.members[:base] // not cleared here: overwritten by the next object, cleared by encodeSized
	case []any:
		w.b = append(w.b, '[')
		for i, e := range t {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			if err := w.value(e, depth+1); err != nil {
				return err
			}
		}
		w.b = append(w.b, ']')
	case string:
		w.b = appendJSONString(w.b, t)
	case json.Number:
		w.b = append(w.b, t...)
	case bool:
		w.b = strconv.AppendBool(w.b, t)
	case nil:
		w.b = append(w.b, "null"...)
	default:
		return fmt.Errorf("cannot encode %T", v)
	}
	return nil
}

// appendJSONString writes s as a JSON string (RFC 8259 §7): quote, backslash and control characters escaped,
// U+2028 and U+2029 too (JavaScript line terminators), each invalid UTF-8 byte as U+FFFD, the rest as it is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonPlain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		rr, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case rr == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
		case rr == '\u2028' || rr == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[rr&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonPlain: the bytes appendJSONString copies as they are without a second look (printable ASCII but the
// quote and the backslash).
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
