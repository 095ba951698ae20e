package decision

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/jsonenc"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// Every allowed Envoy-mode request seals its decision, so carried is encoded by hand rather than by
// encoding/json's reflection: the very bytes json.Marshal(carried) writes (TestCarriedEncodingIsEncodingJSONs
// fills every member of every nested type by reflection, so a member added to token.Identity or
// policy.Obligations and not here fails it; FuzzCarriedEncoding compares any value encoding/json can decode).
// Unseal reads these bytes back by hand (carry_decode.go) and anything else with encoding/json, so a replica of
// either version opens what the other sealed. A value the appenders leave to encoding/json (a time outside
// RFC 3339) goes to it.

// carryBufs lends the scratch buffers carried decisions are built in; Seal encrypts from one into its own
// output, so nothing of it is kept.
var carryBufs = jsonenc.NewScratch(2048, 64<<10)

// sealCarried encodes w into a pooled buffer and hands it to seal, which must not keep it.
func sealCarried(w *carried, seal func(plain []byte) (string, error)) (string, error) {
	bp := carryBufs.Get()
	b, ok := appendCarried(*bp, w)
	defer carryBufs.Put(bp, b)
	if !ok {
		v := *w // a copy for encoding/json, so that w itself does not escape to the heap on every call
		plain, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("decision: seal: %w", err)
		}
		return seal(plain)
	}
	return seal(b)
}

// jw writes one JSON object's members, commas included.
type jw struct {
	b   []byte
	n   int  // members written
	bad bool // a value left to encoding/json
}

func (w *jw) key(k string) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	w.n++
}

func (w *jw) str(k, v string) { w.key(k); w.b = jsonenc.String(w.b, v) }

func (w *jw) strOmit(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *jw) strs(k string, v []string) { w.key(k); w.b = jsonenc.Strings(w.b, v) }

func (w *jw) strsOmit(k string, v []string) {
	if len(v) > 0 {
		w.strs(k, v)
	}
}

func (w *jw) boolean(k string, v bool) { w.key(k); w.b = strconv.AppendBool(w.b, v) }

func (w *jw) boolOmit(k string, v bool) {
	if v {
		w.boolean(k, v)
	}
}

func (w *jw) integer(k string, v int) { w.key(k); w.b = strconv.AppendInt(w.b, int64(v), 10) }

func (w *jw) intOmit(k string, v int) {
	if v != 0 {
		w.integer(k, v)
	}
}

func (w *jw) time(k string, v time.Time) {
	w.key(k)
	var ok bool
	if w.b, ok = jsonenc.Time(w.b, v); !ok {
		w.bad = true
	}
}

// open starts a nested object; close ends it and restores the member count of the outer one.
func (w *jw) open() int   { w.b = append(w.b, '{'); n := w.n; w.n = 0; return n }
func (w *jw) close(n int) { w.b = append(w.b, '}'); w.n = n }

// appendCarried appends json.Marshal(c)'s bytes; false if c holds a value it leaves to encoding/json.
func appendCarried(b []byte, c *carried) ([]byte, bool) {
	w := &jw{b: b}
	o := w.open()
	w.integer("v", c.V)
	w.str("id", c.ID)
	w.time("t", c.Time)
	w.boolean("a", c.Allow)
	w.strsOmit("r", c.Reasons)
	if c.Identity != nil {
		w.key("idn")
		w.identity(c.Identity)
	}
	w.key("rq")
	w.request(&c.Request)
	w.key("p")
	w.policy(&c.Policy)
	w.strOmit("pr", c.Revision)
	w.strOmit("uq", c.UpstreamQuery)
	w.key("s")
	w.shape(&c.Shape)
	w.strOmit("ua", c.Accept)
	if c.Client != nil {
		w.key("c")
		w.client(c.Client)
	}
	w.strsOmit("ds", c.Dropped)
	if len(c.Notices) > 0 {
		w.key("n")
		w.b = jsonenc.StringsMap(w.b, c.Notices)
	}
	w.key("in")
	w.input(&c.Input)
	w.boolOmit("pm", c.Provider)
	if c.Payer != nil {
		w.key("om")
		p := w.open()
		w.str("py", c.Payer.Payer)
		w.strsOmit("in", c.Payer.OptedIn)
		w.strsOmit("ro", c.Payer.RegularOnly)
		w.boolOmit("pd", c.Payer.Pending)
		w.close(p)
	}
	w.strOmit("pi", c.PolicyInput)
	w.boolOmit("pt", c.PolicyTruncated)
	w.close(o)
	return w.b, !w.bad
}

func (w *jw) identity(id *token.Identity) {
	o := w.open()
	w.str("issuer", id.Issuer)
	w.str("client_id", id.ClientID)
	w.str("subject", id.Subject)
	w.strOmit("patient", id.Patient)
	w.strOmit("fhir_user", id.FHIRUser)
	w.strOmit("org", id.Org)
	w.strs("scopes", id.Scopes)
	w.strOmit("jti", id.JTI)
	w.time("expiry", id.Expiry)
	if !id.IssuedAt.IsZero() {
		w.time("issued_at", id.IssuedAt)
	}
	if !id.AuthTime.IsZero() {
		w.time("auth_time", id.AuthTime)
	}
	w.close(o)
}

func (w *jw) request(r *carriedRequest) {
	o := w.open()
	w.str("m", r.Method)
	w.str("i", string(r.Interaction))
	w.strOmit("t", r.ResourceType)
	w.strOmit("id", r.ID)
	w.strOmit("vid", r.VersionID)
	w.boolOmit("c", r.Conditional)
	if r.Operation != nil {
		w.key("op")
		w.operation(r.Operation)
	}
	if r.Compartment != nil {
		w.key("cp")
		w.compartment(r.Compartment)
	}
	if len(r.Params) > 0 {
		w.key("pa")
		w.b = append(w.b, '[')
		for i := range r.Params {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.param(&r.Params[i])
		}
		w.b = append(w.b, ']')
	}
	if len(r.Query) > 0 {
		w.key("q")
		w.b = jsonenc.StringsMap(w.b, r.Query)
	}
	w.strsOmit("pf", r.Prefer)
	w.close(o)
}

func (w *jw) operation(op *fhir.OperationName) {
	o := w.open()
	w.str("Name", op.Name)
	w.str("Level", op.Level)
	w.close(o)
}

func (w *jw) compartment(c *fhir.Compartment) {
	o := w.open()
	w.str("Type", c.Type)
	w.str("ID", c.ID)
	w.close(o)
}

func (w *jw) param(p *carriedParam) {
	o := w.open()
	w.str("k", p.Key)
	w.str("n", p.Name)
	w.strOmit("m", p.Modifier)
	w.strOmit("tt", p.TargetType)
	w.strsOmit("ch", p.Chain)
	if h := p.Has; h != nil {
		w.key("h")
		ho := w.open()
		w.str("TargetType", h.TargetType)
		w.str("RefParam", h.RefParam)
		w.str("Param", h.Param)
		w.close(ho)
	}
	w.strsOmit("v", p.Values)
	w.close(o)
}

func (w *jw) policy(r *policy.Result) {
	o := w.open()
	w.boolean("allow", r.Allow)
	w.integer("status", r.Status)
	w.strs("reasons", r.Reasons)
	w.str("details", r.Details)
	w.key("obligations")
	ob := &r.Obligations
	oo := w.open()
	if c := ob.Compartment; c != nil {
		w.key("compartment")
		co := w.open()
		w.strOmit("patient", c.Patient)
		w.strsOmit("patients", c.Patients)
		w.strOmit("provider", c.Provider)
		w.strOmit("payer", c.Payer)
		w.close(co)
	}
	if len(ob.Narrow) > 0 {
		w.key("narrow")
		w.b = append(w.b, '[')
		for i, n := range ob.Narrow {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			no := w.open()
			w.str("param", n.Param)
			w.str("value", n.Value)
			w.close(no)
		}
		w.b = append(w.b, ']')
	}
	w.strOmit("data_scope", ob.DataScope)
	w.strOmit("rate_class", ob.RateClass)
	if len(ob.ResourceTypes) > 0 {
		w.key("resource_types")
		w.b = append(w.b, '{')
		for i, t := range slices.Sorted(maps.Keys(ob.ResourceTypes)) {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = jsonenc.String(w.b, t)
			w.b = append(w.b, ':')
			w.b = jsonenc.StringsMap(w.b, ob.ResourceTypes[t])
		}
		w.b = append(w.b, '}')
	}
	w.strsOmit("public_types", ob.PublicTypes)
	w.strOmit("adapter", ob.Adapter)
	w.close(oo)
	w.close(o)
}

func (w *jw) shape(s *carriedShape) {
	o := w.open()
	w.strsOmit("e", s.Elements)
	w.strOmit("s", s.Summary)
	w.boolOmit("h0", s.HistoryCountZero)
	w.strsOmit("inm", s.IfNoneMatch)
	if !s.IfModifiedSince.IsZero() {
		w.time("ims", s.IfModifiedSince)
	}
	w.close(o)
}

func (w *jw) client(c *carriedClient) {
	o := w.open()
	w.str("id", c.ID)
	w.strOmit("n", c.Name)
	w.boolOmit("a", c.Active)
	w.strsOmit("apis", c.APIs)
	w.strsOmit("sc", c.Scopes)
	w.strOmit("t", c.Tier)
	w.strOmit("o", c.Org)
	w.strsOmit("nh", c.NotifyHosts)
	w.close(o)
}

func (w *jw) input(in *carriedInput) {
	o := w.open()
	w.str("api", in.API)
	w.str("m", in.Method)
	w.str("p", in.Path)
	w.strOmit("q", in.RawQuery)
	w.strOmit("ip", in.SourceIP)
	w.strOmit("rid", in.RequestID)
	w.strOmit("mo", in.Mode)
	w.intOmit("bl", in.BodyLimit)
	w.strOmit("pb", in.PublicBase)
	w.intOmit("bn", in.BodyLen)
	if len(in.BodySum) > 0 {
		w.key("bs")
		w.b = jsonenc.Bytes(w.b, in.BodySum)
	}
	w.close(o)
}
