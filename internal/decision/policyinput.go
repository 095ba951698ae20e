package decision

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"

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
	b, ok := appendInput(make([]byte, 0, 1024), input, 0)
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

// appendInput appends json.Marshal(v)'s bytes for the types the core builds inputs from (map[string]any, []any,
// string, bool, nil: as canonical.go); false for anything else, which encoding/json then writes. It runs on
// every decision, so it avoids encoding/json's reflection (TestRecordedInputIsEncodingJSONs holds it to it).
func appendInput(b []byte, v any, depth int) ([]byte, bool) {
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
		for i, e := range t {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendInput(b, e, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]any:
		if t == nil {
			return append(b, "null"...), true
		}
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(t)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.String(b, k)
			b = append(b, ':')
			var ok bool
			if b, ok = appendInput(b, t[k], depth+1); !ok {
				return b, false
			}
		}
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
