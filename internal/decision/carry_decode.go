package decision

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// Every Envoy-mode exchange opens its decision, so the bytes appendCarried writes are read back by hand too,
// not by encoding/json's reflection (5% of fhirwall-proxy's CPU in Envoy mode). The reader is narrow on
// purpose: it takes exactly the form appendCarried writes — no whitespace, each member once, in any order, no
// null, integers as strconv writes them, strings of valid UTF-8 — and reports anything else as not its own,
// which decodeCarried then gives to encoding/json, whose answer stands. So the hand reader can only ever be
// faster, never different: TestCarriedDecodingIsEncodingJSONs and FuzzCarriedDecoding hold that whatever it
// accepts, encoding/json (with DisallowUnknownFields) decodes to the same value.

// jr reads one carried decision; bad is set at the first thing it does not take, and everything after is
// skipped.
type jr struct {
	b   []byte
	i   int
	bad bool
}

// readCarried decodes what appendCarried wrote; false when b is not in that form.
func readCarried(b []byte) (carried, bool) {
	r := &jr{b: b}
	var c carried
	r.object(func(k []byte) bool {
		switch string(k) {
		case "v":
			c.V = r.integer()
		case "id":
			c.ID = r.str()
		case "t":
			c.Time = r.time()
		case "a":
			c.Allow = r.boolean()
		case "r":
			c.Reasons = r.strs()
		case "idn":
			c.Identity = r.identity()
		case "rq":
			r.request(&c.Request)
		case "p":
			r.policy(&c.Policy)
		case "pr":
			c.Revision = r.str()
		case "uq":
			c.UpstreamQuery = r.str()
		case "s":
			r.shape(&c.Shape)
		case "ua":
			c.Accept = r.str()
		case "c":
			c.Client = r.client()
		case "ds":
			c.Dropped = r.strs()
		case "n":
			c.Notices = r.strsMap()
		case "in":
			r.input(&c.Input)
		case "pm":
			c.Provider = r.boolean()
		case "pi":
			c.PolicyInput = r.str()
		case "pt":
			c.PolicyTruncated = r.boolean()
		case "om":
			c.Payer = &carriedOptIns{}
			r.object(func(k []byte) bool {
				switch string(k) {
				case "py":
					c.Payer.Payer = r.str()
				case "in":
					c.Payer.OptedIn = r.strs()
				case "ro":
					c.Payer.RegularOnly = r.strs()
				case "pd":
					c.Payer.Pending = r.boolean()
				default:
					return false
				}
				return true
			})
		default:
			return false
		}
		return true
	})
	return c, !r.bad && r.i == len(r.b)
}

func (r *jr) identity() *token.Identity {
	id := &token.Identity{}
	r.object(func(k []byte) bool {
		switch string(k) {
		case "issuer":
			id.Issuer = r.str()
		case "client_id":
			id.ClientID = r.str()
		case "subject":
			id.Subject = r.str()
		case "patient":
			id.Patient = r.str()
		case "fhir_user":
			id.FHIRUser = r.str()
		case "org":
			id.Org = r.str()
		case "scopes":
			id.Scopes = r.strs()
		case "jti":
			id.JTI = r.str()
		case "expiry":
			id.Expiry = r.time()
		case "issued_at":
			id.IssuedAt = r.time()
		case "auth_time":
			id.AuthTime = r.time()
		default:
			return false
		}
		return true
	})
	return id
}

func (r *jr) request(q *carriedRequest) {
	r.object(func(k []byte) bool {
		switch string(k) {
		case "m":
			q.Method = r.str()
		case "i":
			q.Interaction = fhir.Interaction(r.str())
		case "t":
			q.ResourceType = r.str()
		case "id":
			q.ID = r.str()
		case "vid":
			q.VersionID = r.str()
		case "c":
			q.Conditional = r.boolean()
		case "op":
			q.Operation = &fhir.OperationName{}
			r.object(func(k []byte) bool {
				switch string(k) {
				case "Name":
					q.Operation.Name = r.str()
				case "Level":
					q.Operation.Level = r.str()
				default:
					return false
				}
				return true
			})
		case "cp":
			q.Compartment = &fhir.Compartment{}
			r.object(func(k []byte) bool {
				switch string(k) {
				case "Type":
					q.Compartment.Type = r.str()
				case "ID":
					q.Compartment.ID = r.str()
				default:
					return false
				}
				return true
			})
		case "pa":
			q.Params = []carriedParam{}
			r.array(func() {
				q.Params = append(q.Params, carriedParam{})
				r.param(&q.Params[len(q.Params)-1])
			})
		case "q":
			q.Query = r.strsMap()
		case "pf":
			q.Prefer = r.strs()
		default:
			return false
		}
		return true
	})
}

func (r *jr) param(p *carriedParam) {
	r.object(func(k []byte) bool {
		switch string(k) {
		case "k":
			p.Key = r.str()
		case "n":
			p.Name = r.str()
		case "m":
			p.Modifier = r.str()
		case "tt":
			p.TargetType = r.str()
		case "ch":
			p.Chain = r.strs()
		case "h":
			p.Has = &fhir.Has{}
			r.object(func(k []byte) bool {
				switch string(k) {
				case "TargetType":
					p.Has.TargetType = r.str()
				case "RefParam":
					p.Has.RefParam = r.str()
				case "Param":
					p.Has.Param = r.str()
				default:
					return false
				}
				return true
			})
		case "v":
			p.Values = r.strs()
		default:
			return false
		}
		return true
	})
}

func (r *jr) policy(p *policy.Result) {
	r.object(func(k []byte) bool {
		switch string(k) {
		case "allow":
			p.Allow = r.boolean()
		case "status":
			p.Status = r.integer()
		case "reasons":
			p.Reasons = r.strs()
		case "details":
			p.Details = r.str()
		case "obligations":
			r.obligations(&p.Obligations)
		default:
			return false
		}
		return true
	})
}

func (r *jr) obligations(o *policy.Obligations) {
	r.object(func(k []byte) bool {
		switch string(k) {
		case "compartment":
			c := &policy.Compartment{}
			o.Compartment = c
			r.object(func(k []byte) bool {
				switch string(k) {
				case "patient":
					c.Patient = r.str()
				case "patients":
					c.Patients = r.strs()
				case "provider":
					c.Provider = r.str()
				case "payer":
					c.Payer = r.str()
				default:
					return false
				}
				return true
			})
		case "narrow":
			o.Narrow = []policy.Narrow{}
			r.array(func() {
				var n policy.Narrow
				r.object(func(k []byte) bool {
					switch string(k) {
					case "param":
						n.Param = r.str()
					case "value":
						n.Value = r.str()
					default:
						return false
					}
					return true
				})
				o.Narrow = append(o.Narrow, n)
			})
		case "data_scope":
			o.DataScope = r.str()
		case "rate_class":
			o.RateClass = r.str()
		case "resource_types":
			o.ResourceTypes = map[string]policy.Constraints{}
			r.object(func(t []byte) bool {
				o.ResourceTypes[string(t)] = r.strsMap()
				return true
			})
		case "public_types":
			o.PublicTypes = r.strs()
		case "adapter":
			o.Adapter = r.str()
		default:
			return false
		}
		return true
	})
}

func (r *jr) shape(s *carriedShape) {
	r.object(func(k []byte) bool {
		switch string(k) {
		case "e":
			s.Elements = r.strs()
		case "s":
			s.Summary = r.str()
		case "h0":
			s.HistoryCountZero = r.boolean()
		case "inm":
			s.IfNoneMatch = r.strs()
		case "ims":
			s.IfModifiedSince = r.time()
		default:
			return false
		}
		return true
	})
}

func (r *jr) client() *carriedClient {
	c := &carriedClient{}
	r.object(func(k []byte) bool {
		switch string(k) {
		case "id":
			c.ID = r.str()
		case "n":
			c.Name = r.str()
		case "a":
			c.Active = r.boolean()
		case "apis":
			c.APIs = r.strs()
		case "sc":
			c.Scopes = r.strs()
		case "t":
			c.Tier = r.str()
		case "o":
			c.Org = r.str()
		case "nh":
			c.NotifyHosts = r.strs()
		default:
			return false
		}
		return true
	})
	return c
}

func (r *jr) input(in *carriedInput) {
	r.object(func(k []byte) bool {
		switch string(k) {
		case "api":
			in.API = r.str()
		case "m":
			in.Method = r.str()
		case "p":
			in.Path = r.str()
		case "q":
			in.RawQuery = r.str()
		case "ip":
			in.SourceIP = r.str()
		case "rid":
			in.RequestID = r.str()
		case "mo":
			in.Mode = r.str()
		case "bl":
			in.BodyLimit = r.integer()
		case "pb":
			in.PublicBase = r.str()
		case "bn":
			in.BodyLen = r.integer()
		case "bs":
			in.BodySum = r.bytes()
		default:
			return false
		}
		return true
	})
}

// object reads {"k":v,...}, handing each key to member, which reads the value and says whether it knows the
// key. A key twice is not appendCarried's (encoding/json would keep the last), nor is an unknown one, nor an
// object of more members than any appendCarried writes.
func (r *jr) object(member func(key []byte) bool) {
	if !r.next('{') {
		return
	}
	if r.next('}') {
		return
	}
	var seen [maxCarriedMembers][]byte
	n := 0
	for !r.bad {
		k := r.key()
		if r.bad || !r.next(':') || n == len(seen) || slices.ContainsFunc(seen[:n], func(s []byte) bool { return bytes.Equal(s, k) }) || !member(k) {
			r.bad = true
			return
		}
		seen[n] = k
		n++
		if r.next('}') {
			return
		}
		if !r.next(',') {
			r.bad = true
		}
	}
}

// key reads a member name: the bytes themselves when it has no escape (no copy: member compares them, and
// copies what it keeps), else its decoding.
func (r *jr) key() []byte {
	if r.bad || r.i >= len(r.b) || r.b[r.i] != '"' {
		r.bad = true
		return nil
	}
	j := r.i + 1
	for j < len(r.b) && r.b[j] != '"' && r.b[j] != '\\' && r.b[j] >= 0x20 && r.b[j] < utf8.RuneSelf {
		j++
	}
	if j < len(r.b) && r.b[j] == '"' {
		k := r.b[r.i+1 : j]
		r.i = j + 1
		return k
	}
	return []byte(r.str())
}

// maxCarriedMembers bounds the members of one object the hand reader takes: the most of a struct it reads is
// 21 (carried); a longer map (query parameters, notices) goes to encoding/json.
const maxCarriedMembers = 32

// array reads [v,...], element reading each value; "[]" is an empty array.
func (r *jr) array(element func()) {
	if !r.next('[') {
		return
	}
	if r.next(']') {
		return
	}
	for !r.bad {
		element()
		if r.next(']') {
			return
		}
		if !r.next(',') {
			r.bad = true
		}
	}
}

// next consumes c if it comes next; a required byte that is missing sets bad through the callers.
func (r *jr) next(c byte) bool {
	if r.bad || r.i >= len(r.b) || r.b[r.i] != c {
		if c == '{' || c == '[' {
			r.bad = true
		}
		return false
	}
	r.i++
	return true
}

// null consumes a null if it comes next (appendCarried writes one for a nil slice or map it does not omit).
func (r *jr) null() bool {
	if !r.bad && hasAt(r.b, r.i, "null") {
		r.i += 4
		return true
	}
	return false
}

// strs reads an array of strings; [] is an empty, non-nil slice and null a nil one, as encoding/json reads them.
func (r *jr) strs() []string {
	if r.null() {
		return nil
	}
	ss := []string{}
	r.array(func() { ss = append(ss, r.str()) })
	return ss
}

// strsMap reads an object of string arrays (url.Values, http.Header, policy.Constraints); {} is an empty map,
// null a nil one.
func (r *jr) strsMap() map[string][]string {
	if r.null() {
		return nil
	}
	m := map[string][]string{}
	r.object(func(k []byte) bool {
		m[string(k)] = r.strs()
		return true
	})
	return m
}

func (r *jr) boolean() bool {
	switch {
	case r.bad:
	case hasAt(r.b, r.i, "true"):
		r.i += 4
		return true
	case hasAt(r.b, r.i, "false"):
		r.i += 5
		return false
	}
	r.bad = true
	return false
}

// integer reads an int as strconv.AppendInt writes it (no sign but '-', no leading zero, no "-0").
func (r *jr) integer() int {
	if r.bad {
		return 0
	}
	j := r.i
	if j < len(r.b) && r.b[j] == '-' {
		j++
	}
	d := j
	for j < len(r.b) && '0' <= r.b[j] && r.b[j] <= '9' {
		j++
	}
	n, err := strconv.Atoi(string(r.b[r.i:j]))
	if err != nil || j-d > 1 && r.b[d] == '0' || d > r.i && n == 0 {
		r.bad = true
		return 0
	}
	r.i = j
	return n
}

// time reads a time as time.Time's UnmarshalJSON does, the quoted literal whole; an escape in it is not ours.
func (r *jr) time() time.Time {
	var t time.Time
	if r.bad || r.i >= len(r.b) || r.b[r.i] != '"' {
		r.bad = true
		return t
	}
	end := r.i + 1
	for end < len(r.b) && r.b[end] != '"' && r.b[end] != '\\' {
		end++
	}
	if end >= len(r.b) || r.b[end] != '"' || t.UnmarshalJSON(r.b[r.i:end+1]) != nil {
		r.bad = true
		return time.Time{}
	}
	r.i = end + 1
	return t
}

// bytes reads base64 (standard, padded) as encoding/json reads a []byte; null is nil.
func (r *jr) bytes() []byte {
	if r.null() {
		return nil
	}
	s := r.str()
	if r.bad {
		return nil
	}
	p, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		r.bad = true
		return nil
	}
	return p
}

// str reads a JSON string of valid UTF-8 with the escapes JSON defines; a lone surrogate (which encoding/json
// replaces with U+FFFD) or a raw control character is not ours.
func (r *jr) str() string {
	if r.bad || r.i >= len(r.b) || r.b[r.i] != '"' {
		r.bad = true
		return ""
	}
	start := r.i + 1
	j := start
	for j < len(r.b) && r.b[j] != '"' && r.b[j] != '\\' && r.b[j] >= 0x20 {
		j++
	}
	if j < len(r.b) && r.b[j] == '"' {
		if !utf8.Valid(r.b[start:j]) {
			r.bad = true
			return ""
		}
		r.i = j + 1
		return string(r.b[start:j])
	}
	out := append([]byte(nil), r.b[start:j]...)
	for j < len(r.b) {
		c := r.b[j]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				r.bad = true
				return ""
			}
			r.i = j + 1
			return string(out)
		case c < 0x20:
			r.bad = true
			return ""
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(r.b) {
			break
		}
		switch e := r.b[j+1]; e {
		case 'u':
			c1, ok := escapedRune(r.b, j+2)
			if !ok {
				r.bad = true
				return ""
			}
			j += 6
			if utf16.IsSurrogate(c1) {
				c2, ok := rune(0), false
				if hasAt(r.b, j, `\u`) {
					c2, ok = escapedRune(r.b, j+2)
				}
				ch := utf16.DecodeRune(c1, c2)
				if !ok || ch == utf8.RuneError {
					r.bad = true
					return ""
				}
				c1 = ch
				j += 6
			}
			out = utf8.AppendRune(out, c1)
			continue
		default:
			c, ok := jsonEscape(e)
			if !ok {
				r.bad = true
				return ""
			}
			out = append(out, c)
		}
		j += 2
	}
	r.bad = true
	return ""
}

// escapedRune reads the four hex digits of a \u escape at b[i:] (hex4 and isHex are the response reader's).
func escapedRune(b []byte, i int) (rune, bool) {
	if i+4 > len(b) || !isHex(b[i]) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) {
		return 0, false
	}
	return hex4(b[i : i+4]), true
}

func hasAt(b []byte, i int, s string) bool {
	return len(b)-i >= len(s) && string(b[i:i+len(s)]) == s
}
