package decision

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

const ndjsonType = "application/fhir+ndjson"

// exportDecision is an allowed Provider Access decision of client for a request, under the permitted set
// {member-01, member-04} the policy would have given org-a.
func exportDecision(t *testing.T, client, method, path, query string) *Decision {
	t.Helper()
	req, err := fhir.Classify(method, path, query, func(name string) []string {
		if name == "Prefer" {
			return []string{"respond-async"}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &Decision{ID: "d1", Allow: true, Input: Input{API: "provider-access", Method: method, Path: path},
		Identity: &token.Identity{ClientID: client, Org: "Organization/" + client}, Request: req}
	d.Policy.Obligations.Compartment = &policy.Compartment{Patients: []string{"member-01", "member-04"}}
	d.Policy.Obligations.ResourceTypes = map[string]policy.Constraints{"*": {}}
	d.Policy.Obligations.PublicTypes = []string{"Practitioner"}
	return d
}

func exportCore() *Core {
	c := newEnforcingCore()
	c.Jobs = NewInMemoryJobs(0, nil)
	return c
}

const pollLocation = "http://127.0.0.1:8090/fhir/$export-poll-status?_jobId=job-1"

// facts returns the export facts the core gives the policy for d.
func exportFactsOf(t *testing.T, c *Core, d *Decision) map[string]any {
	t.Helper()
	facts := map[string]any{}
	if !c.exportFacts(context.Background(), d, facts) {
		t.Fatalf("exportFacts refused: %v", d.Reasons)
	}
	return facts
}

func TestExportJobIsBoundToTheClientThatStartedIt(t *testing.T) {
	c := exportCore()
	ctx := context.Background()
	kick := exportDecision(t, "provider-org-a", "GET", "/Group/attribution-org-a/$export", "_type=Patient")
	if got := exportFactsOf(t, c, kick); got["prefer_respond_async"] != true {
		t.Fatalf("kick-off facts %v, want prefer_respond_async", got)
	}
	if err := c.BindExportJob(ctx, kick, 202, pollLocation); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, client, query string
		want                bool
	}{
		{"the owner polls its job", "provider-org-a", "_jobId=job-1", true},
		{"another valid client polls it", "provider-org-b", "_jobId=job-1", false},
		{"an unknown job", "provider-org-a", "_jobId=job-2", false},
		{"no job id", "provider-org-a", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := exportDecision(t, tc.client, "GET", "/$export-poll-status", tc.query)
			if got := exportFactsOf(t, c, d)["export_job_bound_to_caller"]; got != tc.want {
				t.Errorf("export_job_bound_to_caller = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKickoffThatCannotBeBoundIsNotSent(t *testing.T) {
	kick := exportDecision(t, "provider-org-a", "GET", "/Group/attribution-org-a/$export", "")
	for name, tc := range map[string]struct {
		jobs     JobStore
		location string
	}{
		"no job store":                 {nil, pollLocation},
		"no Content-Location":          {NewInMemoryJobs(0, nil), ""},
		"Content-Location without job": {NewInMemoryJobs(0, nil), "http://127.0.0.1:8090/fhir/$export-poll-status"},
		"not a status URL":             {NewInMemoryJobs(0, nil), "http://127.0.0.1:8090/fhir/Patient?_jobId=x"},
	} {
		t.Run(name, func(t *testing.T) {
			c := exportCore()
			c.Jobs = tc.jobs
			if err := c.BindExportJob(context.Background(), kick, 202, tc.location); !errors.Is(err, ErrExportBinding) {
				t.Errorf("err %v, want ErrExportBinding", err)
			}
		})
	}
	c := exportCore()
	other := exportDecision(t, "provider-org-a", "GET", "/Patient/member-01", "")
	if err := c.BindExportJob(context.Background(), other, 202, ""); err != nil {
		t.Errorf("a decision that starts no export: %v", err)
	}
}

func TestManifestBindsEveryFileToTheJobsOwner(t *testing.T) {
	c := exportCore()
	ctx := context.Background()
	manifest := `{"transactionTime":"2026-11-27T06:00:00Z","request":"http://x/fhir/Group/attribution-org-a/$export",
"requiresAccessToken":true,"output":[{"type":"Patient","url":"http://127.0.0.1:8090/fhir/Binary/f1"},
{"type":"Observation","url":"http://127.0.0.1:8090/fhir/Binary/f2"}],"error":[]}`
	poll := exportDecision(t, "provider-org-a", "GET", "/$export-poll-status", "_jobId=job-1")
	e, err := c.EnforceResponse(ctx, poll, 200, "application/json", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != 200 {
		t.Errorf("manifest refused: %d %s", e.Status, e.Body)
	}
	for _, id := range []string{"f1", "f2"} {
		owner := exportFactsOf(t, c, exportDecision(t, "provider-org-a", "GET", "/Binary/"+id, ""))
		stranger := exportFactsOf(t, c, exportDecision(t, "provider-org-b", "GET", "/Binary/"+id, ""))
		if owner["export_file_bound_to_caller"] != true || stranger["export_file_bound_to_caller"] != false {
			t.Errorf("Binary/%s: owner %v, other client %v", id, owner, stranger)
		}
	}
	if f := exportFactsOf(t, c, exportDecision(t, "provider-org-a", "GET", "/Binary/f3", "")); f["export_file_bound_to_caller"] != false {
		t.Errorf("a Binary no manifest listed is bound: %v", f)
	}

	bad := strings.Replace(manifest, "Binary/f2", "Observation/o1", 1)
	if _, err := c.EnforceResponse(ctx, poll, 200, "application/json", []byte(bad)); !errors.Is(err, ErrResponse) {
		t.Errorf("a file that is not a Binary: err %v, want ErrResponse", err)
	}
	running := exportDecision(t, "provider-org-a", "GET", "/$export-poll-status", "_jobId=job-1")
	if e, err := c.EnforceResponse(ctx, running, 202, fhirJSON, nil); err != nil || e.Status != 202 {
		t.Errorf("in-progress answer: %v %v", e.Status, err)
	}
}

// hapiManifest is a complete status as HAPI writes it: request under its own address, files under the
// address it was told by X-Forwarded-* (host is that address, with the API's prefix).
func hapiManifest(host string) string {
	return `{
  "transactionTime" : "2026-12-06T15:12:39.830+00:00",
  "request" : "http://127.0.0.1:8090/fhir/Group/attribution-org-a/$export?_type=Patient,Observation",
  "requiresAccessToken" : true,
  "output" : [ {"type" : "Patient", "url" : "` + host + `/Binary/f1"}, {"type" : "Observation", "url" : "` + host + `/Binary/f2", "count" : 12} ],
  "error" : [ {"type" : "OperationOutcome", "url" : "` + host + `/Binary/f3"} ]
}`
}

func TestManifestNamesTheAPIsPublicURLInBothModes(t *testing.T) {
	for _, tc := range []struct {
		name, inputBase, hapiHost, want string
	}{
		{"through Envoy: public_url", "", "http://127.0.0.1:10000/provider-access/fhir", "https://api.example/provider-access/fhir"},
		{"standalone: the proxy's own base", "http://127.0.0.1:8080/provider-access/fhir", "http://127.0.0.1:8080/provider-access/fhir", "http://127.0.0.1:8080/provider-access/fhir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := exportCore()
			poll := exportDecision(t, "provider-org-a", "GET", "/$export-poll-status", "_jobId=job-1")
			poll.Input.PublicBase = tc.inputBase
			e, err := c.EnforceResponse(context.Background(), poll, 200, "application/json;charset=ISO-8859-1", []byte(hapiManifest(tc.hapiHost)))
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				TransactionTime     string `json:"transactionTime"`
				Request             string `json:"request"`
				RequiresAccessToken bool   `json:"requiresAccessToken"`
				Output, Error       []struct {
					Type  string          `json:"type"`
					URL   string          `json:"url"`
					Count json.RawMessage `json:"count"`
				}
			}
			if err := json.Unmarshal(e.Body, &m); err != nil {
				t.Fatalf("%v: %s", err, e.Body)
			}
			if want := tc.want + "/Group/attribution-org-a/$export?_type=Patient,Observation"; m.Request != want {
				t.Errorf("request %q, want %q", m.Request, want)
			}
			files := append(m.Output, m.Error...)
			for i, f := range files {
				if want := tc.want + "/Binary/f" + string(rune('1'+i)); f.URL != want {
					t.Errorf("file %s %q, want %q", f.Type, f.URL, want)
				}
			}
			if len(files) != 3 || m.TransactionTime != "2026-12-06T15:12:39.830+00:00" || !m.RequiresAccessToken ||
				string(m.Output[1].Count) != "12" || m.Error[0].Type != "OperationOutcome" {
				t.Errorf("manifest lost a field: %s", e.Body)
			}
			if strings.Contains(string(e.Body), ":8090") || strings.Contains(string(e.Body), ":10000") {
				t.Errorf("manifest names an address the client must not use: %s", e.Body)
			}
		})
	}
}

func TestManifestWhoseRequestIsNoKickoffIsNotSent(t *testing.T) {
	c := exportCore()
	poll := exportDecision(t, "provider-org-a", "GET", "/$export-poll-status", "_jobId=job-1")
	bad := strings.Replace(hapiManifest("http://h/fhir"), "Group/attribution-org-a/$export", "Patient/member-02", 1)
	if _, err := c.EnforceResponse(context.Background(), poll, 200, "application/json", []byte(bad)); !errors.Is(err, ErrResponse) {
		t.Errorf("err %v, want ErrResponse", err)
	}
}

func TestKickoffPathUnderAnyBase(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.1:8090/fhir/$export":                                  "$export",
		"http://127.0.0.1:8090/fhir/Patient/$export?_type=Patient":            "Patient/$export?_type=Patient",
		"http://127.0.0.1:10000/fhir/Group/attribution-org-a/$export":         "Group/attribution-org-a/$export",
		"https://api.example/provider-access/fhir/Group/g-1/$export?_since=x": "Group/g-1/$export?_since=x",
		"http://127.0.0.1:8090/fhir/Patient/member-01":                        "",
		"http://127.0.0.1:8090/fhir/$export#frag":                             "",
	} {
		got, ok := kickoffPath(raw)
		if got != want || ok != (want != "") {
			t.Errorf("kickoffPath(%q) = %q %v, want %q", raw, got, ok, want)
		}
	}
}

func ndjson(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(strings.ReplaceAll(l, "\n", "") + "\n")
	}
	return b.String()
}

// exportLines are the ids of the resources in an NDJSON body.
func exportLines(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m["resourceType"].(string)+"/"+m["id"].(string))
	}
	return out
}

func TestExportFileKeepsOnlyPermittedMembersLines(t *testing.T) {
	file := ndjson(patientRes("member-01"), patientRes("member-12"), labObs("o1", "member-04"),
		labObs("o2", "member-02"), eob("e1", "member-12"), practitioner)
	want := "Patient/member-01 Observation/o1 Practitioner/pr1"
	c := exportCore()
	d := exportDecision(t, "provider-org-a", "GET", "/Binary/f1", "")

	e, err := c.EnforceResponse(context.Background(), d, 200, ndjsonType, []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(exportLines(t, e.Body), " "); got != want || e.Removed != 3 {
		t.Errorf("NDJSON kept %q (removed %d), want %q", got, e.Removed, want)
	}
	if strings.Join(e.Patients, ",") != "member-01,member-04" {
		t.Errorf("patients %v", e.Patients)
	}

	// The same file asked for as FHIR JSON: a Binary whose data is the NDJSON.
	bin, _ := json.Marshal(map[string]any{"resourceType": "Binary", "id": "f1", "contentType": ndjsonType,
		"data": base64.StdEncoding.EncodeToString([]byte(file))})
	e, err = c.EnforceResponse(context.Background(), d, 200, fhirJSON, bin)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Data string }
	if err := json.Unmarshal(e.Body, &res); err != nil {
		t.Fatal(err)
	}
	data, _ := base64.StdEncoding.DecodeString(res.Data)
	if got := strings.Join(exportLines(t, data), " "); got != want {
		t.Errorf("Binary data kept %q, want %q", got, want)
	}
}

func TestExportFileThatCannotBeCheckedIsNotSent(t *testing.T) {
	c := exportCore()
	d := exportDecision(t, "provider-org-a", "GET", "/Binary/f1", "")
	for name, tc := range map[string]struct{ contentType, body string }{
		"a line that is not JSON":     {ndjsonType, ndjson(patientRes("member-01")) + "{not json\n"},
		"a line without resourceType": {ndjsonType, `{"id":"x"}` + "\n"},
		"another content type":        {"text/csv", "member-02,Doe\n"},
		"a Binary of another type":    {fhirJSON, `{"resourceType":"Binary","contentType":"text/plain","data":"eA=="}`},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := c.EnforceResponse(context.Background(), d, 200, tc.contentType, []byte(tc.body)); !errors.Is(err, ErrResponse) {
				t.Errorf("err %v, want ErrResponse", err)
			}
		})
	}
	e, err := c.EnforceResponse(context.Background(), d, 404, fhirJSON, []byte(`{"resourceType":"OperationOutcome","issue":[{"diagnostics":"Binary/f1 is not known"}]}`))
	if err != nil || e.Status != 404 || strings.Contains(string(e.Body), "f1") {
		t.Errorf("upstream 404: %d %s %v", e.Status, e.Body, err)
	}
}

func TestJobStoreOutageRefusesPollsAndFiles(t *testing.T) {
	c := exportCore()
	c.Jobs = downJobs{}
	for _, path := range []string{"/$export-poll-status", "/Binary/f1"} {
		d := exportDecision(t, "provider-org-a", "GET", path, "_jobId=j")
		if path == "/Binary/f1" {
			d = exportDecision(t, "provider-org-a", "GET", path, "")
		}
		if c.exportFacts(context.Background(), d, map[string]any{}) || d.Reasons[0] != "job_store_unavailable" {
			t.Errorf("%s: not refused on a store outage: %v", path, d.Reasons)
		}
	}
}

type downJobs struct{}

func (downJobs) Bind(context.Context, ExportRef, string, time.Duration) error {
	return errors.New("down")
}
func (downJobs) Owner(context.Context, ExportRef) (string, bool, error) {
	return "", false, errors.New("down")
}

func TestInMemoryJobsKeepsTheFirstOwnerUntilExpiry(t *testing.T) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	j := NewInMemoryJobs(0, func() time.Time { return now })
	ctx := context.Background()
	job := ExportRef{ExportJob, "j1"}
	if err := j.Bind(ctx, job, "a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := j.Bind(ctx, job, "b", time.Hour); !errors.Is(err, ErrExportBound) {
		t.Errorf("rebinding to another owner: %v", err)
	}
	if owner, ok, _ := j.Owner(ctx, ExportRef{ExportFile, "j1"}); ok {
		t.Errorf("a file with a job's id is bound to %q", owner)
	}
	now = now.Add(2 * time.Hour)
	if _, ok, _ := j.Owner(ctx, job); ok {
		t.Error("binding outlived its ttl")
	}
}

func TestBinaryIDOnlyFromBinaryReads(t *testing.T) {
	for raw, want := range map[string]string{
		"http://h/fhir/Binary/abc-1":                    "abc-1",
		"/Binary/x":                                     "x",
		"http://h/fhir/Binary/abc?_format=x":            "",
		"http://h/fhir/Observation/abc":                 "",
		"http://h/fhir/Binary/abc/_history/1":           "",
		"http://h/fhir/Binary/" + url.PathEscape("a/b"): "",
	} {
		got, ok := binaryID(raw)
		if got != want || ok != (want != "") {
			t.Errorf("binaryID(%q) = %q, %v; want %q", raw, got, ok, want)
		}
	}
}

func TestExportFileLinesGetTheSameDataScopeAsReads(t *testing.T) {
	c := exportCore()
	file := exportDecision(t, "provider-org-a", "GET", "/Binary/f1", "")
	read := exportDecision(t, "provider-org-a", "GET", "/ExplanationOfBenefit/e1", "")
	for _, d := range []*Decision{file, read} {
		d.Policy.Obligations.DataScope = "provider-access"
		d.Time = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	}
	res := strings.Replace(eob("e1", "member-01"), `"status"`, `"billablePeriod":{"start":"2024-03-01"},"status"`, 1)
	single, err := c.EnforceResponse(context.Background(), read, 200, fhirJSON, []byte(res))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := c.EnforceResponse(context.Background(), file, 200, ndjsonType, []byte(ndjson(res)))
	if err != nil {
		t.Fatal(err)
	}
	if single.Status != 200 || string(single.Body) == res {
		t.Fatalf("the read was not rewritten by the data scope (%d); this test needs one that is", single.Status)
	}
	var want, got any
	_ = json.Unmarshal(single.Body, &want)
	if l := strings.TrimSpace(string(lines.Body)); l != "" {
		_ = json.Unmarshal([]byte(l), &got)
	}
	if a, b := mustMarshal(t, want), mustMarshal(t, got); a != b {
		t.Errorf("export line differs from the read:\n line %s\n read %s", b, a)
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCancelAnswerPassesOnlyAnOperationOutcome(t *testing.T) {
	if _, err := cancelAnswer(202, []byte(`{"resourceType":"OperationOutcome","issue":[]}`)); err != nil {
		t.Errorf("OperationOutcome refused: %v", err)
	}
	if _, err := cancelAnswer(202, nil); err != nil {
		t.Errorf("empty answer refused: %v", err)
	}
	for _, b := range []string{`{"resourceType":"Patient","id":"member-02"}`, `not json`} {
		if _, err := cancelAnswer(202, []byte(b)); !errors.Is(err, ErrResponse) {
			t.Errorf("%s passed: %v", b, err)
		}
	}
}
