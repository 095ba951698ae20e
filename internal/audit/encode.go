package audit

import (
	"encoding/json"
	"strconv"

	"github.com/fhirwall/fhirwall/internal/jsonenc"
)

// An access record is encoded on every request (the spool's Write), so it is written by hand rather than by
// encoding/json's reflection: the same bytes, member for member, as json.Marshal(accessRecord) — the audit
// log is hash-chained and read by SIEMs against docs/audit/record.schema.json, so not one byte may differ.
// TestAccessRecordEncodingIsEncodingJSONs and FuzzAccessRecordEncoding hold it to that; a value this encoder
// does not write exactly as encoding/json would (a time outside RFC 3339, a NaN) goes to encoding/json.

// encodeBufs lends the scratch buffers access records are built in; the record itself is copied out at its
// exact size, because the spool keeps it until its commit.
var encodeBufs = jsonenc.NewScratch(2048, 64<<10)

// encodeAccess is json.Marshal(a) for an access record.
func encodeAccess(a *accessRecord) ([]byte, error) {
	bp := encodeBufs.Get()
	b, ok := appendAccess(*bp, a)
	var out []byte
	if ok {
		out = append(make([]byte, 0, len(b)), b...)
	}
	encodeBufs.Put(bp, b)
	if !ok {
		v := *a // a copy for encoding/json, so that a itself does not escape to the heap on every call
		return json.Marshal(v)
	}
	return out, nil
}

// appendAccess appends a's JSON; false if a holds a value it leaves to encoding/json.
func appendAccess(b []byte, a *accessRecord) ([]byte, bool) {
	var ok bool
	b = append(b, `{"schema":`...)
	b = jsonenc.String(b, a.Schema)
	b = append(b, `,"kind":`...)
	b = jsonenc.String(b, a.Kind)
	b = append(b, `,"id":`...)
	b = jsonenc.String(b, a.ID)
	b = append(b, `,"time":`...)
	if b, ok = jsonenc.Time(b, a.Time); !ok {
		return b, false
	}
	b = append(b, `,"api":`...)
	b = jsonenc.String(b, a.API)
	b = append(b, `,"decision_id":`...)
	b = jsonenc.String(b, a.DecisionID)
	b = append(b, `,"allow":`...)
	b = strconv.AppendBool(b, a.Allow)
	b = append(b, `,"reasons":`...)
	b = jsonenc.Strings(b, a.Reasons)
	b = append(b, `,"policy_revision":`...)
	b = jsonenc.String(b, a.PolicyRevision)
	b = append(b, `,"client_id":`...)
	b = jsonenc.String(b, a.ClientID)
	b = append(b, `,"subject":`...)
	b = jsonenc.String(b, a.Subject)
	b = append(b, `,"fhir_user":`...)
	b = jsonenc.String(b, a.FHIRUser)
	b = append(b, `,"token_jti":`...)
	b = jsonenc.String(b, a.TokenJTI)
	b = append(b, `,"scopes":`...)
	b = jsonenc.Strings(b, a.Scopes)
	b = append(b, `,"patients":`...)
	b = jsonenc.Strings(b, a.Patients)
	b = append(b, `,"resource_type":`...)
	b = jsonenc.String(b, a.ResourceType)
	b = append(b, `,"interaction":`...)
	b = jsonenc.String(b, a.Interaction)
	b = append(b, `,"method":`...)
	b = jsonenc.String(b, a.Method)
	b = append(b, `,"path":`...)
	b = jsonenc.String(b, a.Path)
	b = append(b, `,"query":`...)
	b = jsonenc.String(b, a.Query)
	b = append(b, `,"source_ip":`...)
	b = jsonenc.String(b, a.SourceIP)
	b = append(b, `,"request_id":`...)
	b = jsonenc.String(b, a.RequestID)
	if a.TraceID != "" {
		b = append(b, `,"trace_id":`...)
		b = jsonenc.String(b, a.TraceID)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(a.Status), 10)
	b = append(b, `,"data_categories":`...)
	b = jsonenc.Strings(b, a.DataCategories)
	b = append(b, `,"upstream_ms":`...)
	if b, ok = jsonenc.Float64(b, a.UpstreamMillis); !ok {
		return b, false
	}
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, a.Bytes, 10)
	b = append(b, `,"outcome":`...)
	b = jsonenc.String(b, a.Outcome)
	if a.SplitID != "" {
		b = append(b, `,"split_id":`...)
		b = jsonenc.String(b, a.SplitID)
	}
	if a.Part != 0 {
		b = append(b, `,"part":`...)
		b = strconv.AppendInt(b, int64(a.Part), 10)
	}
	if a.Parts != 0 {
		b = append(b, `,"parts":`...)
		b = strconv.AppendInt(b, int64(a.Parts), 10)
	}
	if pv := a.Policy; pv != nil {
		if b, ok = appendPolicy(b, pv); !ok {
			return b, false
		}
	}
	// The admin members: encode clears them on an access record; a caller that did not is left to encoding/json.
	if a.Actor != "" || a.Action != "" || a.Target != "" || a.Reason != "" || len(a.Before) != 0 || len(a.After) != 0 {
		return b, false
	}
	if a.Chain != "" {
		b = append(b, `,"chain":`...)
		b = jsonenc.String(b, a.Chain)
	}
	if a.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, a.Seq, 10)
	}
	if a.PrevHash != "" {
		b = append(b, `,"prev_hash":`...)
		b = jsonenc.String(b, a.PrevHash)
	}
	if a.Hash != "" {
		b = append(b, `,"hash":`...)
		b = jsonenc.String(b, a.Hash)
	}
	return append(b, '}'), true
}

// appendPolicy appends the policy member; false if its input is not already as encoding/json writes a
// RawMessage (valid, compact, HTML-escaped), which the inputs Decide records always are.
func appendPolicy(b []byte, pv *PolicyVerdict) ([]byte, bool) {
	b = append(b, `,"policy":{`...)
	comma := false
	if len(pv.Input) > 0 {
		if !compactJSON(pv.Input) {
			return b, false
		}
		b = append(b, `"input":`...)
		b = append(b, pv.Input...)
		comma = true
	}
	if pv.Truncated {
		if comma {
			b = append(b, ',')
		}
		b = append(b, `"truncated":true`...)
		comma = true
	}
	if comma {
		b = append(b, ',')
	}
	b = append(b, `"allow":`...)
	b = strconv.AppendBool(b, pv.Allow)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(pv.Status), 10)
	b = append(b, `,"reasons":`...)
	b = jsonenc.Strings(b, pv.Reasons)
	b = append(b, `,"revision":`...)
	b = jsonenc.String(b, pv.Revision)
	return append(b, '}'), true
}

// compactJSON reports whether raw is what encoding/json writes for it as a RawMessage, byte for byte: valid,
// no whitespace outside strings (none inside either, to keep the scan simple: such an input goes to
// encoding/json), none of the characters it escapes (<, >, &, U+2028, U+2029, whose UTF-8 starts 0xE2).
func compactJSON(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r', '<', '>', '&', 0xe2:
			return false
		}
	}
	return json.Valid(raw)
}
