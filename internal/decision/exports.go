package decision

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Bulk Data Access 2.0 for Provider Access (CMS-0057-F): the status URL of a provider's export and every
// output file it lists are capabilities of the client that started the job. Another client, even a valid
// one, gets the same 404 as for a job or file that does not exist (FHIR-NOTES: bulk status and file replay).

// ExportTTL is how long a job and its files stay bound to their owner. HAPI keeps export files for about
// two hours by default; a binding that outlives them only costs a row.
const ExportTTL = 24 * time.Hour

// ExportKind says what an ExportRef names.
type ExportKind string

const (
	ExportJob  ExportKind = "job"  // a $export-poll-status _jobId
	ExportFile ExportKind = "file" // an output file, Binary/<id> on the FHIR server
)

// ExportRef names one bound thing: a job id or an output file's Binary id.
type ExportRef struct {
	Kind ExportKind
	ID   string
}

// ErrExportBound means a job or file is already bound to another owner; the core fails closed on it.
var ErrExportBound = errors.New("export job or file bound to another owner")

// JobStore binds bulk export jobs and their output files to the client that started the job. Several proxy
// replicas must share it (PostgreSQL); InMemoryJobs is the embedded default for standalone mode.
type JobStore interface {
	// Bind binds ref to owner for ttl. Binding again to the same owner extends it; to another owner while
	// the first binding lives is ErrExportBound.
	Bind(ctx context.Context, ref ExportRef, owner string, ttl time.Duration) error
	// Owner returns the live binding of ref; ok is false when there is none.
	Owner(ctx context.Context, ref ExportRef) (owner string, ok bool, err error)
}

// InMemoryJobs is a JobStore in one process's memory, bounded like InMemoryPages (the oldest bindings are
// evicted first, and then answer 404 like an expired job). Replicas do not see each other's jobs.
type InMemoryJobs struct {
	m InMemoryPages
}

var _ JobStore = (*InMemoryJobs)(nil)

// NewInMemoryJobs returns an empty store; max 0 means 100,000 bindings, now nil means time.Now.
func NewInMemoryJobs(max int, now func() time.Time) *InMemoryJobs {
	return &InMemoryJobs{m: InMemoryPages{Max: max, Now: now}}
}

func (r ExportRef) key() string { return string(r.Kind) + "\x00" + r.ID }

// Bind implements JobStore.
func (j *InMemoryJobs) Bind(ctx context.Context, ref ExportRef, owner string, ttl time.Duration) error {
	if err := j.m.Bind(ctx, ref.key(), owner, ttl); errors.Is(err, ErrPageBound) {
		return ErrExportBound
	} else if err != nil {
		return err
	}
	return nil
}

// Owner implements JobStore.
func (j *InMemoryJobs) Owner(ctx context.Context, ref ExportRef) (string, bool, error) {
	return j.m.Owner(ctx, ref.key())
}

// ExportOwner is the owner an export job is bound to: the client that started it. Provider Access tokens
// carry no patient, so the client alone names the owner.
func ExportOwner(d *Decision) string {
	if d.Identity == nil {
		return ""
	}
	return d.Identity.ClientID
}

func isExportKickoff(r fhir.Request) bool {
	return r.Interaction == fhir.Operation && r.Operation != nil && r.Operation.Name == "export"
}

func isExportPoll(r fhir.Request) bool {
	return r.Interaction == fhir.Operation && r.Operation != nil && r.Operation.Name == "export-poll-status"
}

func isExportFileRead(r fhir.Request) bool {
	return r.Interaction == fhir.Read && r.ResourceType == "Binary"
}

// exportFacts adds what the provider-access policy needs to decide bulk export requests: whether the job
// or file asked for is bound to the caller, and whether a kick-off asked for the asynchronous pattern.
// A store that cannot answer refuses the request (503) rather than decide without it.
func (c *Core) exportFacts(ctx context.Context, d *Decision, facts map[string]any) bool {
	r := d.Request
	var ref ExportRef
	var fact string
	switch {
	case isExportKickoff(r):
		facts["prefer_respond_async"] = slices.Contains(r.Prefer, "respond-async")
		return true
	case isExportPoll(r):
		ref, fact = ExportRef{ExportJob, r.Query.Get("_jobId")}, "export_job_bound_to_caller"
	case isExportFileRead(r):
		ref, fact = ExportRef{ExportFile, r.ID}, "export_file_bound_to_caller"
	default:
		return true
	}
	bound := false
	if c.Jobs != nil && ref.ID != "" && d.Identity != nil {
		owner, ok, err := c.Jobs.Owner(ctx, ref)
		if err != nil {
			c.Log.Error("export job store unavailable", "decision_id", d.ID, "error", err)
			d.refuse(outcome.Unavailable, "job_store_unavailable")
			return false
		}
		bound = ok && owner == ExportOwner(d)
	}
	facts[fact] = bound
	return true
}

// ErrExportBinding means an allowed export answer could not be bound to its owner; the faces must not
// send it (502), since a job nobody owns could never be polled and one bound wrongly could leak.
var ErrExportBinding = errors.New("export job could not be bound")

// BindExportJob binds the job an allowed kick-off started to the client that started it. Faces call it
// with the upstream's status and Content-Location header (Bulk Data 2.0 §Kick-off response: 202 +
// Content-Location, the status URL) before the answer leaves; for any other decision it does nothing.
// A non-nil error means the answer must not be sent.
func (c *Core) BindExportJob(ctx context.Context, d *Decision, status int, contentLocation string) error {
	if d == nil || !d.Allow || !isExportKickoff(d.Request) || status != 202 {
		return nil
	}
	u, err := url.Parse(contentLocation)
	if err != nil {
		return fmt.Errorf("%w: Content-Location: %v", ErrExportBinding, err)
	}
	job := u.Query().Get("_jobId")
	if job == "" || !strings.HasSuffix(u.Path, "/$export-poll-status") {
		return fmt.Errorf("%w: Content-Location %q names no job", ErrExportBinding, contentLocation)
	}
	if c.Jobs == nil {
		return fmt.Errorf("%w: no job store", ErrExportBinding)
	}
	if err := c.Jobs.Bind(ctx, ExportRef{ExportJob, job}, ExportOwner(d), ExportTTL); err != nil {
		return fmt.Errorf("%w: %w", ErrExportBinding, err)
	}
	return nil
}

// enforceExport handles the answers of bulk export requests that are not FHIR resources: the completed
// poll's manifest (plain JSON) and output files (NDJSON). done is false for every other answer.
func (c *Core) enforceExport(ctx context.Context, d *Decision, status int, contentType string, body []byte) (out Enforced, done bool, err error) {
	switch {
	case isExportPoll(d.Request) && d.Input.Method == "DELETE":
		out, err = cancelAnswer(status, body)
		return out, true, err
	case isExportPoll(d.Request) && status == 200:
		out, err = c.enforceManifest(ctx, d, body)
		return out, true, err
	case isExportFileRead(d.Request) && d.Policy.Obligations.Compartment != nil:
		out, err = c.enforceExportFile(d, status, contentType, body)
		return out, true, err
	}
	return Enforced{}, false, nil
}

// cancelAnswer lets the answer to a cancel (Bulk Data 2.0 §Delete) pass when it is empty or an
// OperationOutcome; HAPI sends the latter without a Content-Type, so the body, not the header, is judged.
func cancelAnswer(status int, body []byte) (Enforced, error) {
	if len(bytes.TrimSpace(body)) > 0 {
		var oo struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
			return Enforced{}, fmt.Errorf("%w: export cancel answered with something other than an OperationOutcome", ErrResponse)
		}
	}
	return Enforced{Status: status, Body: body, Patients: []string{}, Categories: []string{}}, nil
}

// enforceManifest binds every file the Bulk Data 2.0 §Complete Status manifest lists to the job's owner and
// makes every URL in it name the API's public base: HAPI writes file URLs from X-Forwarded-* but `request`
// from its own address (the kick-off as it saw it), and the client reaches neither HAPI nor its paths. A file
// URL that is not a Binary read cannot be bound, and a request URL that is not a kick-off cannot be mapped,
// so such a manifest is not sent. Without a known public base the URLs are left as HAPI wrote them.
func (c *Core) enforceManifest(ctx context.Context, d *Decision, body []byte) (Enforced, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return Enforced{}, fmt.Errorf("%w: export manifest: not a JSON object (%v)", ErrResponse, err)
	}
	if c.Jobs == nil {
		return Enforced{}, fmt.Errorf("%w: no job store", ErrExportBinding)
	}
	base := c.publicBase(d)
	changed := false
	for _, key := range []string{"output", "error"} {
		raw, ok := m[key]
		if !ok {
			continue
		}
		files, ok := raw.([]any)
		if !ok {
			return Enforced{}, fmt.Errorf("%w: export manifest: %s is not an array", ErrResponse, key)
		}
		for _, f := range files {
			file, _ := f.(map[string]any)
			u, _ := file["url"].(string)
			id, ok := binaryID(u)
			if !ok {
				return Enforced{}, fmt.Errorf("%w: export file %q is not a Binary", ErrResponse, u)
			}
			if err := c.Jobs.Bind(ctx, ExportRef{ExportFile, id}, ExportOwner(d), ExportTTL); err != nil {
				return Enforced{}, fmt.Errorf("%w: %w", ErrExportBinding, err)
			}
			if public := base + "/Binary/" + id; base != "" && u != public {
				file["url"], changed = public, true
			}
		}
	}
	if r, ok := m["request"].(string); ok && base != "" {
		rel, ok := kickoffPath(r)
		if !ok {
			return Enforced{}, fmt.Errorf("%w: export manifest request %q is not a kick-off", ErrResponse, r)
		}
		if public := base + "/" + rel; r != public {
			m["request"], changed = public, true
		}
	}
	out := Enforced{Status: 200, Body: body, Patients: []string{}, Categories: []string{}}
	if changed {
		b, err := encode(m)
		if err != nil {
			return Enforced{}, err
		}
		out.Body = b
	}
	return out, nil
}

// kickoffPath returns the part of a kick-off URL below the FHIR base, with its query: one of the Bulk Data
// 2.0 kick-off endpoints ($export, Patient/$export, Group/<id>/$export), whatever base it was written under.
func kickoffPath(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Fragment != "" {
		return "", false
	}
	segs := strings.Split(strings.TrimSuffix(u.Path, "/"), "/")
	n := len(segs)
	var rel string
	switch {
	case n == 0 || segs[n-1] != "$export":
		return "", false
	case n >= 3 && segs[n-3] == "Group" && fhir.IsID(segs[n-2]):
		rel = "Group/" + segs[n-2] + "/$export"
	case n >= 2 && segs[n-2] == "Patient":
		rel = "Patient/$export"
	default:
		rel = "$export"
	}
	if u.RawQuery != "" {
		rel += "?" + u.RawQuery
	}
	return rel, true
}

// binaryID returns <id> of a URL whose path ends in /Binary/<id> (HAPI's export files).
func binaryID(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	segs := strings.Split(u.Path, "/")
	if len(segs) < 2 || segs[len(segs)-2] != "Binary" || !fhir.IsID(segs[len(segs)-1]) {
		return "", false
	}
	return segs[len(segs)-1], true
}

func isNDJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/fhir+ndjson" || mt == "application/ndjson")
}

// enforceExportFile filters an output file line by line: each line is a resource held to the same
// compartment check as a search result (an attributed member who did not opt out). The file comes as raw
// NDJSON or, when the client asked for FHIR JSON, as a Binary resource whose data is that NDJSON.
func (c *Core) enforceExportFile(d *Decision, status int, contentType string, body []byte) (Enforced, error) {
	if status < 200 || status > 299 {
		return c.enforceError(d, status, contentType, body)
	}
	e := c.newEnforcer(d)
	var out []byte
	switch {
	case isNDJSON(contentType):
		kept, err := e.ndjson(body)
		if err != nil {
			return Enforced{}, err
		}
		out = kept
	case isFHIRJSON(contentType):
		bin, err := decodeResource(body)
		if err != nil {
			return Enforced{}, err
		}
		ct, _ := bin["contentType"].(string)
		data, _ := bin["data"].(string)
		if bin["resourceType"] != "Binary" || !isNDJSON(ct) {
			return Enforced{}, fmt.Errorf("%w: export file is not an NDJSON Binary", ErrResponse)
		}
		raw, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return Enforced{}, fmt.Errorf("%w: Binary.data: %v", ErrResponse, err)
		}
		kept, err := e.ndjson(raw)
		if err != nil {
			return Enforced{}, err
		}
		out = body
		if e.changed {
			bin["data"] = base64.StdEncoding.EncodeToString(kept)
			if out, err = encode(bin); err != nil {
				return Enforced{}, err
			}
		}
	default:
		return Enforced{}, fmt.Errorf("%w: export file content type %q", ErrResponse, contentType)
	}
	return Enforced{Status: status, Body: out, Patients: sortedSet(e.patients), Categories: sortedSet(e.categories),
		Removed: e.removed}, nil
}

// ndjson keeps the lines whose resource may leave, byte for byte; a line that is not a resource fails the
// whole file rather than pass unchecked.
func (e *enforcer) ndjson(body []byte) ([]byte, error) {
	var out bytes.Buffer
	for line := range bytes.Lines(body) {
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) == 0 {
			continue
		}
		res, err := decodeResource(trimmed)
		if err != nil {
			return nil, err
		}
		// keep may rewrite the resource (the API's data scope); such a line leaves re-encoded.
		before := e.changed
		e.changed = false
		kept := false
		if rt, _ := res["resourceType"].(string); rt != "Bundle" {
			kept = e.keep(res)
		}
		rewritten := e.changed
		e.changed = before || rewritten
		if !kept {
			e.removed++
			e.changed = true
			continue
		}
		if rewritten {
			if trimmed, err = encode(res); err != nil {
				return nil, err
			}
		}
		out.Write(trimmed)
		out.WriteByte('\n')
	}
	if !e.changed {
		return body, nil
	}
	return out.Bytes(), nil
}
