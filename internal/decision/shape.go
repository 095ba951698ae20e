package decision

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Shape is what the client asked about the form of the answer rather than about which resources match it:
// _elements, _summary, _total, a history's _count=0 and the conditional headers. Invariant 1: none of it
// reaches the FHIR server, so what the checks see is what the server holds; the core applies it to what is
// left after enforcement (shapeAnswer).
type Shape struct {
	// Elements are the top-level element names of _elements (R4 §3.1.1.5.9), without a type prefix.
	Elements []string
	// Summary is _summary's value: "true", "text", "data", "count" or "" (false, or absent).
	Summary string
	// HistoryCountZero: an instance history asked with _count=0. It is asked upstream with _count=1 so that
	// visibility can be judged on a version, and answered with no entries (and no total).
	HistoryCountZero bool
	// IfNoneMatch and IfModifiedSince (RFC 9110 §13.1.2, §13.1.3) are judged after the resource is known to be
	// visible; upstream they would answer 304 about a resource the caller may not see (Invariant 3).
	IfNoneMatch     []string
	IfModifiedSince time.Time
}

// Empty reports whether the answer needs no shaping.
func (s Shape) Empty() bool {
	return len(s.Elements) == 0 && s.Summary == "" && !s.HistoryCountZero && len(s.IfNoneMatch) == 0 && s.IfModifiedSince.IsZero()
}

// shapingParams are the parameters fhirwall takes off the upstream request; it answers them itself.
var shapingParams = []string{"_elements", "_summary", "_format", "_total"}

// ConditionalHeaders never reach the FHIR server (both faces remove them): If-None-Match and
// If-Modified-Since are judged by the core after enforcement; the others are refused by readShape.
var ConditionalHeaders = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"}

// CountPageSize is the page fhirwall asks the FHIR server for to answer _summary=count: the count is served
// only when the whole result fits in it, so that it is the count of what the caller may see.
const CountPageSize = 500

// jsonTypes are the media types fhirwall answers in; every answer is FHIR JSON (or NDJSON for bulk files).
var jsonTypes = []string{"application/fhir+json", "application/json", "application/json+fhir",
	"application/fhir+ndjson", "application/ndjson", "*/*", "application/*"}

// jsonFormats are the _format values meaning JSON (R4 §3.1.0.1.5).
var jsonFormats = []string{"json", "application/json", "application/fhir+json", "application/json+fhir"}

// readShape reads the shaping parameters and headers of an allowed request, or the refusal for them.
func readShape(req fhir.Request, header func(string) []string) (Shape, *outcome.Refusal, string) {
	var s Shape
	countOnly := false
	if header == nil {
		header = func(string) []string { return nil }
	}
	if !acceptsJSON(header("Accept")) {
		return s, &outcome.NotAcceptable, "not_acceptable"
	}
	for _, name := range []string{"If-Match", "If-Unmodified-Since", "If-Range"} {
		if len(header(name)) > 0 {
			r := outcome.NotSupported.WithDiagnostics("the header " + name + " is not supported on this API")
			return s, &r, "unsupported_header"
		}
	}
	for _, key := range shapingParams {
		if inQuery := len(req.Query[key]); inQuery != countKey(req.Params, key) {
			// A _search form body cannot be rewritten in Envoy mode, so it may not carry what fhirwall must
			// take off the upstream request.
			r := outcome.NotSupported.WithDiagnostics(key + " must be sent in the query string, not in a _search form body")
			return s, &r, "shaping_parameter_in_body"
		}
	}
	for _, p := range req.Params {
		if !slices.Contains(shapingParams, p.Key) && p.Key != "_count" {
			continue
		}
		switch p.Key {
		case "_format":
			for _, v := range p.Values {
				if !slices.Contains(jsonFormats, strings.ToLower(v)) {
					return s, &outcome.NotAcceptable, "not_acceptable"
				}
			}
		case "_elements":
			for _, v := range p.Values {
				name, ok := elementName(v, req.ResourceType)
				if !ok {
					r := outcome.NotSupported.WithDiagnostics("_elements value " + strconv.Quote(v) + " is not an element name")
					return s, &r, "unsupported_parameter"
				}
				if !slices.Contains(s.Elements, name) {
					s.Elements = append(s.Elements, name)
				}
			}
		case "_summary":
			if len(p.Values) != 1 || s.Summary != "" {
				r := outcome.NotSupported.WithDiagnostics("_summary takes one value")
				return s, &r, "unsupported_parameter"
			}
			switch v := p.Values[0]; v {
			case "count", "data", fhir.SummaryTrue, fhir.SummaryText:
				s.Summary = v
			case "false":
			default:
				r := outcome.NotSupported.WithDiagnostics("_summary=" + v + " is not one of true, text, data, count, false")
				return s, &r, "unsupported_parameter"
			}
		case "_total":
			for _, v := range p.Values {
				if v != "none" && v != "estimate" && v != "accurate" {
					r := outcome.NotSupported.WithDiagnostics("_total=" + v + " is not one of none, estimate, accurate")
					return s, &r, "unsupported_parameter"
				}
			}
		case "_count":
			if len(p.Values) == 1 && p.Values[0] == "0" {
				switch req.Interaction {
				case fhir.HistoryInstance:
					s.HistoryCountZero = true
				case fhir.SearchType:
					// R4 §3.1.1.5.5: _count=0 asks for the count alone; the FHIR server's would include what
					// is withheld, so it is counted like _summary=count.
					countOnly = true
				}
			}
		}
	}
	if countOnly {
		s.Summary = "count"
	}
	if s.Summary == "count" && req.Interaction != fhir.SearchType {
		r := outcome.NotSupported.WithDiagnostics("_summary=count is served on searches only")
		return s, &r, "unsupported_parameter"
	}
	s.IfNoneMatch = header("If-None-Match")
	if v := header("If-Modified-Since"); len(v) == 1 {
		// RFC 9110 §13.1.3: an invalid date is ignored.
		if t, err := http.ParseTime(v[0]); err == nil {
			s.IfModifiedSince = t
		}
	}
	return s, nil, ""
}

func countKey(params []fhir.Param, key string) int {
	n := 0
	for _, p := range params {
		if p.Key == key {
			n++
		}
	}
	return n
}

// elementName reads one _elements value: an element name, or Type.name for the searched type.
func elementName(v, resourceType string) (string, bool) {
	if t, name, ok := strings.Cut(v, "."); ok {
		if t != resourceType || resourceType == "" {
			return "", false
		}
		v = name
	}
	if v == "" || len(v) > 64 || v[0] < 'a' || v[0] > 'z' {
		return "", false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", false
		}
	}
	return v, true
}

// acceptsJSON: no Accept header, or one that takes FHIR JSON (RFC 9110 §12.5.1; q-values are not weighed:
// a JSON type listed at all is enough).
func acceptsJSON(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			mt, _, err := mime.ParseMediaType(part)
			if err == nil && slices.Contains(jsonTypes, mt) {
				return true
			}
		}
	}
	return false
}

// upstreamAccept is the Accept header the FHIR server gets: FHIR JSON, whatever the client preferred among
// what it accepts (a client that weighs XML above JSON would get XML from HAPI, which cannot be checked), or
// the client's own when it asks for NDJSON. A Binary (on these APIs only a bulk export file) is always asked
// as NDJSON (Bulk Data 2.0 §File Request): asked as FHIR JSON, HAPI wraps the file in a Binary resource, a
// type no API serves. Whatever else comes back is refused by enforcement (502), never passed.
func upstreamAccept(req fhir.Request, values []string) string {
	if req.ResourceType == "Binary" {
		return "application/fhir+ndjson"
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && strings.HasSuffix(mt, "ndjson") {
				return ""
			}
		}
	}
	return "application/fhir+json"
}

// upstreamQuery is the query the FHIR server gets: the client's own query string without the shaping
// parameters, with the narrowing parameters set (overwriting the client's: a second value would widen an
// OR). It is the client's raw query unchanged when nothing needed to change.
func upstreamQuery(raw string, req fhir.Request, shape Shape, narrow map[string]string) string {
	q := url.Values{}
	changed := false
	for k, v := range req.Query {
		if slices.Contains(shapingParams, k) {
			changed = true
			continue
		}
		q[k] = v
	}
	if shape.HistoryCountZero {
		q.Set("_count", "1")
		changed = true
	}
	if shape.Summary == "count" {
		q.Set("_count", strconv.Itoa(CountPageSize))
		changed = true
	}
	for k, v := range narrow {
		q.Set(k, v)
		changed = true
	}
	if !changed {
		return raw
	}
	return q.Encode()
}

// counts applies Invariant 3 to a Bundle's counts. A history's total counts versions of whoever held the
// resource, so it never leaves, nor do its paging links (they would tell that more versions exist), and an
// instance history with no version left is the 404 of a missing resource. A searchset's total leaves only when it is the count of what the caller sees: the first page
// holds the whole result (no next link); otherwise it is dropped. _summary=count is answered from that same
// count, or refused when the result is larger than one page. ok is false with the refusal to send instead.
func (e *enforcer) counts(b map[string]any) (refusal outcome.Refusal, ok bool) {
	d := e.d
	if !e.enforce && d.Shape.Summary != "count" && !d.Shape.HistoryCountZero {
		return outcome.Refusal{}, true // nothing was withheld: the FHIR server's counts are the caller's
	}
	typ, _ := b["type"].(string)
	entries, _ := b["entry"].([]any)
	switch {
	case typ == "history":
		if d.Request.Interaction == fhir.HistoryInstance && len(entries) == 0 {
			return outcome.NotFound, false
		}
		if _, had := b["total"]; had {
			delete(b, "total")
			e.changed = true
		}
		if d.Shape.HistoryCountZero {
			delete(b, "entry")
			e.changed = true
		}
		// A next or last link would say that versions exist beyond what the caller sees, versions that may
		// be another member's: a history is answered in one page.
		if dropPagingLinks(b) {
			e.changed = true
		}
	case typ == "searchset":
		matches := 0
		for _, v := range entries {
			entry, _ := v.(map[string]any)
			search, _ := entry["search"].(map[string]any)
			if mode, _ := search["mode"].(string); mode == "" || mode == "match" {
				matches++
			}
		}
		whole := d.Request.Interaction == fhir.SearchType && !hasLink(b, "next")
		if d.Shape.Summary == "count" {
			if !whole {
				return outcome.NotSupported.WithDiagnostics(fmt.Sprintf(
					"_summary=count is answered only for results of at most %d resources, which fhirwall counts after its checks; page through the search instead", CountPageSize)), false
			}
			for k := range b {
				if k != "resourceType" && k != "type" && k != "meta" && k != "id" {
					delete(b, k)
				}
			}
			b["total"] = json.Number(strconv.Itoa(matches))
			e.changed = true
			return outcome.Refusal{}, true
		}
		old, had := b["total"]
		switch {
		case whole && (!had || fmt.Sprint(old) != strconv.Itoa(matches)):
			b["total"] = json.Number(strconv.Itoa(matches))
			e.changed = true
		case !whole && had:
			delete(b, "total")
			e.changed = true
		}
	}
	return outcome.Refusal{}, true
}

// dropPagingLinks removes every link but self; it reports whether it removed any.
func dropPagingLinks(b map[string]any) bool {
	links, _ := b["link"].([]any)
	kept := links[:0:0]
	for _, l := range links {
		if m, _ := l.(map[string]any); m["relation"] == "self" {
			kept = append(kept, l)
		}
	}
	if len(kept) == len(links) {
		return false
	}
	b["link"] = kept
	return true
}

func hasLink(b map[string]any, relation string) bool {
	links, _ := b["link"].([]any)
	for _, l := range links {
		m, _ := l.(map[string]any)
		if r, _ := m["relation"].(string); r == relation {
			return true
		}
	}
	return false
}

// shape applies _elements and _summary=data to what is left after enforcement: the resource read, or a
// searchset's matches (R4 §3.1.1.5.9: included resources are not subsetted), or every version of a history.
// It reports whether it changed anything.
func (e *enforcer) shape(root map[string]any) bool {
	s := e.d.Shape
	if len(s.Elements) == 0 && s.Summary != "data" && s.Summary != fhir.SummaryTrue && s.Summary != fhir.SummaryText {
		return false
	}
	if rt, _ := root["resourceType"].(string); rt != "Bundle" {
		return s.apply(root)
	}
	changed := false
	typ, _ := root["type"].(string)
	entries, _ := root["entry"].([]any)
	for _, v := range entries {
		entry, _ := v.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		if res == nil || res["resourceType"] == "OperationOutcome" {
			continue
		}
		search, _ := entry["search"].(map[string]any)
		if mode, _ := search["mode"].(string); typ == "searchset" && mode != "" && mode != "match" {
			continue
		}
		changed = s.apply(res) || changed
	}
	return changed
}

// subsetted is the tag R4 §3.1.1.5.9 asks a server to put on a resource it returns in part.
var subsetted = map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}

// apply trims one resource: _summary=data drops the narrative, true and text keep what R4 defines for them
// (fhir.Summarize); _elements keeps resourceType, id, meta and the named elements (and modifierExtension,
// which a reader must see to understand what is left). A trimmed resource is tagged SUBSETTED.
func (s Shape) apply(res map[string]any) bool {
	changed, subset := false, false
	switch s.Summary {
	case "data":
		if _, ok := res["text"]; ok {
			delete(res, "text")
			changed, subset = true, true
		}
	case fhir.SummaryTrue, fhir.SummaryText:
		if fhir.Summarize(res, s.Summary) {
			changed, subset = true, true
		}
	}
	if len(s.Elements) > 0 {
		for k := range res {
			switch k {
			case "resourceType", "id", "meta", "modifierExtension":
				continue
			}
			if !slices.Contains(s.Elements, k) {
				delete(res, k)
				changed = true
			}
		}
		changed, subset = true, true
	}
	if subset {
		meta, _ := res["meta"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
			res["meta"] = meta
		}
		tags, _ := meta["tag"].([]any)
		meta["tag"] = append(tags, subsetted)
	}
	return changed
}

// notModified judges If-None-Match and If-Modified-Since against a resource the caller may see (RFC 9110
// §13.1.2: If-None-Match wins when both are sent). It returns the headers of the 304 when it is one.
func (s Shape) notModified(res map[string]any) (map[string]string, bool) {
	if len(s.IfNoneMatch) == 0 && s.IfModifiedSince.IsZero() {
		return nil, false
	}
	meta, _ := res["meta"].(map[string]any)
	version, _ := meta["versionId"].(string)
	lastUpdated, _ := meta["lastUpdated"].(string)
	h := map[string]string{}
	if version != "" {
		h["etag"] = `W/"` + version + `"`
	}
	modified, err := time.Parse(time.RFC3339Nano, lastUpdated)
	if err == nil {
		h["last-modified"] = modified.UTC().Format(http.TimeFormat)
	}
	if len(s.IfNoneMatch) > 0 {
		for _, v := range s.IfNoneMatch {
			for tag := range strings.SplitSeq(v, ",") {
				tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
				if tag == "*" || version != "" && tag == `"`+version+`"` {
					return h, true
				}
			}
		}
		return nil, false
	}
	if err != nil {
		return nil, false
	}
	return h, !modified.Truncate(time.Second).After(s.IfModifiedSince)
}

// shapeParams are the client's shaping parameters as a next or previous link must carry them: the FHIR
// server never saw them, so its paging links lack them, and a page fetched without them would come back
// whole.
func (s Shape) shapeParams() url.Values {
	v := url.Values{}
	if len(s.Elements) > 0 {
		v.Set("_elements", strings.Join(s.Elements, ","))
	}
	if s.Summary != "" && s.Summary != "count" {
		v.Set("_summary", s.Summary)
	}
	return v
}
