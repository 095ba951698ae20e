package decision

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/jsonenc"
)

// The audit record keeps what the policy saw (audit.PolicyVerdict), so that a candidate policy set can be
// replayed on recorded decisions (internal/policy/replay). The input is recorded, not rebuilt later: the
// facts in it (attribution, opt-outs, page and job ownership) are those of the moment of the decision, which
// no later reading can give again.

// redacted replaces a parameter value that must not reach the audit trail, as audit.RedactQuery does.
const redacted = "REDACTED"

// recordedInput is the policy input as the audit record keeps it: compact JSON with its keys sorted
// (encoding/json's order, so one input always gives the same bytes), the values of parameters named
// access_token redacted. An input longer than audit.MaxPolicyInput is left out (truncated); one that does not
// encode (no input Decide builds) is left out too, and the record then has no policy member.
func recordedInput(input map[string]any) (b []byte, truncated bool) {
	e := inputEncoders.Get().(*inputEncoder)
	out, ok := e.encode(input)
	if ok {
		b = append(make([]byte, 0, len(out)), out...) // the record keeps it: its exact size, out of the pool
	}
	e.release(out)
	if !ok {
		var err error
		if b, err = json.Marshal(input); err != nil {
			return nil, false
		}
	}
	if containsFold(b, "access_token") {
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if dec.Decode(&v) != nil {
			return nil, false
		}
		redactTokens(v)
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, false
		}
	}
	if len(b) > audit.MaxPolicyInput {
		return nil, true
	}
	return b, false
}

// inputEncoder writes json.Marshal's bytes of the values the core builds inputs from (map[string]any, []any,
// string, []string, bool, nil: as canonical.go) without encoding/json's reflection and its per-map key
// slices: it runs on every decision (TestRecordedInputIsEncodingJSONs holds it to encoding/json). Anything
// else reports false and encoding/json writes the input. One encoder serves one goroutine at a time.
type inputEncoder struct {
	buf  []byte
	keys []string // the keys of the objects being encoded, one stretch per nesting level
}

var inputEncoders = sync.Pool{New: func() any { return &inputEncoder{buf: make([]byte, 0, 2048)} }}

// maxPooledInput: a larger buffer (an input near the bound) is not kept for the next decision.
const maxPooledInput = 4 * audit.MaxPolicyInput

func (e *inputEncoder) encode(v map[string]any) ([]byte, bool) {
	return e.value(e.buf[:0], v, 0)
}

func (e *inputEncoder) release(b []byte) {
	if cap(b) <= maxPooledInput {
		e.buf = b[:0]
	} else {
		e.buf = make([]byte, 0, 2048)
	}
	clear(e.keys[:cap(e.keys)])
	e.keys = e.keys[:0]
	inputEncoders.Put(e)
}

func (e *inputEncoder) value(b []byte, v any, depth int) ([]byte, bool) {
	if depth > maxCanonicalDepth {
		return b, false
	}
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), true
	case bool:
		return strconv.AppendBool(b, t), true
	case string:
		return jsonenc.String(b, t), true
	case []string:
		if t == nil {
			return append(b, "null"...), true
		}
		return jsonenc.Strings(b, t), true
	case []any:
		if t == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, el := range t {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = e.value(b, el, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]any:
		if t == nil {
			return append(b, "null"...), true
		}
		start := len(e.keys)
		for k := range t {
			e.keys = append(e.keys, k)
		}
		keys := e.keys[start:]
		slices.Sort(keys)
		b = append(b, '{')
		for i := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			k := e.keys[start+i] // e.keys may have grown (and moved) under a nested object
			b = jsonenc.String(b, k)
			b = append(b, ':')
			var ok bool
			if b, ok = e.value(b, t[k], depth+1); !ok {
				return b, false
			}
		}
		e.keys = e.keys[:start]
		return append(b, '}'), true
	}
	return b, false
}

// redactTokens replaces, anywhere in a decoded input, the values of a parameter named access_token: a request
// parameter ({"name": "access_token", "values": [...]}, its raw key too) or a granular scope's parameter map.
func redactTokens(v any) {
	switch t := v.(type) {
	case map[string]any:
		name, _ := t["name"].(string)
		key, _ := t["key"].(string)
		if isTokenParam(name) || isTokenParam(key) {
			if vals, ok := t["values"].([]any); ok {
				for i := range vals {
					vals[i] = redacted
				}
			}
		}
		for k, e := range t {
			if vals, ok := e.([]any); ok && isTokenParam(k) {
				for i := range vals {
					vals[i] = redacted
				}
				continue
			}
			redactTokens(e)
		}
	case []any:
		for _, e := range t {
			redactTokens(e)
		}
	}
}

// isTokenParam: access_token, in any case, with or without a modifier (access_token:exact).
func isTokenParam(s string) bool {
	name, _, _ := strings.Cut(s, ":")
	return strings.EqualFold(name, "access_token")
}

// containsFold reports whether s holds sub (ASCII) in any case.
func containsFold(s []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == sub[0]|0x20 && strings.EqualFold(string(s[i:i+len(sub)]), sub) {
			return true
		}
	}
	return false
}

// policyVerdict is the record's policy member: nil when the policy gave no verdict on this decision.
func (d *Decision) policyVerdict() *audit.PolicyVerdict {
	if len(d.PolicyInput) == 0 && !d.PolicyInputTruncated {
		return nil
	}
	return &audit.PolicyVerdict{Input: d.PolicyInput, Truncated: d.PolicyInputTruncated, Allow: d.Policy.Allow,
		Status: d.Policy.Status, Reasons: nonNil(d.Policy.Reasons), Revision: d.Policy.Revision}
}
