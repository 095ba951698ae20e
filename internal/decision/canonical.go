package decision

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The canonical encoding of a policy input, the key of the decision cache (cache.go). Two inputs encode alike
// only if they are the same value: every value starts with a tag naming its type, strings carry their length,
// arrays and objects their count, and an object's members come in ascending byte order of their keys (a Go
// map has no duplicate keys), so the encoding is prefix-free and each value has exactly one. decodeCanonical
// (canonical_test.go) reads any encoding back to the value it came from, and FuzzCanonical holds both ways.
//
// Only the types the decision core builds inputs from are encoded: map[string]any, []any, string, bool and nil.
// Anything else is errNotCanonical, and that input is decided without the cache.

const (
	tagNull   = 'n'
	tagFalse  = 'f'
	tagTrue   = 't'
	tagString = 's'
	tagArray  = 'a'
	tagObject = 'o'
)

// errNotCanonical: the input holds a value of a type the encoding does not know.
var errNotCanonical = errors.New("policy input: no canonical encoding")

// maxCanonicalDepth bounds nesting; inputs are about five deep.
const maxCanonicalDepth = 64

// canonicalEncoder reuses its buffers between inputs; one encoder serves one goroutine at a time.
type canonicalEncoder struct {
	buf  []byte
	keys []string // the keys of the objects being encoded, one stretch per nesting level
}

// encode returns the encoding of v in e's buffer, valid until the next encode.
func (e *canonicalEncoder) encode(v any) ([]byte, error) {
	e.buf = e.buf[:0]
	e.keys = e.keys[:0]
	if err := e.value(v, 0); err != nil {
		clear(e.keys[:cap(e.keys)])
		return nil, err
	}
	return e.buf, nil
}

func (e *canonicalEncoder) value(v any, depth int) error {
	if depth > maxCanonicalDepth {
		return fmt.Errorf("%w: nested deeper than %d", errNotCanonical, maxCanonicalDepth)
	}
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, tagNull)
	case bool:
		if x {
			e.buf = append(e.buf, tagTrue)
		} else {
			e.buf = append(e.buf, tagFalse)
		}
	case string:
		e.buf = append(e.buf, tagString)
		e.str(x)
	case []any:
		e.buf = append(e.buf, tagArray)
		e.buf = binary.AppendUvarint(e.buf, uint64(len(x)))
		for _, el := range x {
			if err := e.value(el, depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		e.buf = append(e.buf, tagObject)
		e.buf = binary.AppendUvarint(e.buf, uint64(len(x)))
		start := len(e.keys)
		for k := range x {
			e.keys = append(e.keys, k)
		}
		keys := e.keys[start:]
		slices.Sort(keys)
		for _, k := range keys {
			e.str(k)
			if err := e.value(x[k], depth+1); err != nil {
				return err
			}
		}
		clear(e.keys[start:]) // no key outlives its input in the pooled encoder
		e.keys = e.keys[:start]
	default:
		return fmt.Errorf("%w: a %T", errNotCanonical, v)
	}
	return nil
}

func (e *canonicalEncoder) str(s string) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
}
