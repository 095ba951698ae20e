//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/smartclient"
)

// providerToken is a SMART Backend Services token of a provider organisation's client (provider-org-a,
// provider-org-b), signed with its test key.
func providerToken(t *testing.T, client string) string {
	t.Helper()
	key, err := smartclient.LoadPrivateKey(filepath.Join(repoRoot(), "test", "fixtures", "keys", client+".TEST-ONLY.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := smartclient.BackendServiceToken(ctx(t), issuer, client, key, client+"-test-1", []string{"system/*.rs"})
	if err != nil {
		t.Fatalf("backend token for %s: %v", client, err)
	}
	return tok.AccessToken
}

type bulkAnswer struct {
	status          int
	body            []byte
	contentType     string
	contentLocation string
	header          http.Header
}

// bulk sends one Bulk Data request with the headers a bulk client sends.
func bulk(t *testing.T, method, url, token string, header map[string]string) bulkAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if banner := resp.Header.Get("X-Powered-By"); banner != "" {
		t.Errorf("%s %s: the FHIR server's X-Powered-By %q was passed on", method, url, banner)
	}
	return bulkAnswer{resp.StatusCode, b, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Location"), resp.Header}
}

var kickoffHeaders = map[string]string{"Prefer": "respond-async"}

// exportManifest is the part of the Bulk Data 2.0 complete-status answer the test reads.
type exportManifest struct {
	Request       string
	Output, Error []struct{ Type, URL string }
}

// checkRetryAfter fails unless a poll answered in progress says when to come back (Bulk Data 2.0 §Status
// request: a delay in seconds or an HTTP-date).
func checkRetryAfter(t *testing.T, a bulkAnswer) {
	t.Helper()
	v := a.header.Get("Retry-After")
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return
	}
	if _, err := http.ParseTime(v); err != nil {
		t.Errorf("poll in progress: Retry-After %q, want a delay in seconds or an HTTP-date", v)
	}
}

// checkExportLines fails on an NDJSON line that is not a resource or that names a patient outside
// permitted, and returns how many lines the file has.
func checkExportLines(t *testing.T, file string, body []byte, permitted []string) (lines int) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		lines++
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s: a line that is not JSON: %.200s", file, line)
		}
		for _, p := range exportPatientRefs(r) {
			if !slices.Contains(permitted, p) {
				t.Errorf("%s: %v/%v names %s, who is not a permitted member", file, r["resourceType"], r["id"], p)
			}
		}
		if r["resourceType"] == "Patient" && !slices.Contains(permitted, r["id"].(string)) {
			t.Errorf("%s: Patient/%v exported", file, r["id"])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// exportPatientRefs is every Patient/<id> reference anywhere in a resource.
func exportPatientRefs(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" && strings.HasPrefix(s, "Patient/") {
				out = append(out, strings.TrimPrefix(s, "Patient/"))
			} else {
				out = append(out, exportPatientRefs(e)...)
			}
		}
	case []any:
		for _, e := range x {
			out = append(out, exportPatientRefs(e)...)
		}
	}
	return out
}

func TestProviderBulkExportHoldsOnlyPermittedMembersAndIsBoundToItsClient(t *testing.T) {
	evidence.Proves(t, "CMS-PROV-05", "CMS-PROV-01", "CMS-PROV-02")
	orgA := providerToken(t, "provider-org-a")
	orgB := providerToken(t, "provider-org-b")
	member := member01Token(t)
	for _, m := range providerModes {
		t.Run(m.name, func(t *testing.T) {
			// Another provider's attribution group: the same 404 as a group that does not exist.
			if a := bulk(t, "GET", m.base+"/Group/attribution-org-b/$export", orgA, kickoffHeaders); a.status != 404 {
				t.Errorf("org-a exporting org-b's group: %d %.300s", a.status, a.body)
			}
			if a := bulk(t, "GET", m.base+"/Patient/$export", orgA, kickoffHeaders); a.status != 403 {
				t.Errorf("Patient/$export by a provider: %d %.300s", a.status, a.body)
			}
			// A patient-scoped token never starts an export, on either API.
			patientAccess := strings.Replace(m.base, "/provider-access/", "/patient-access/", 1)
			for _, u := range []string{m.base + "/Group/attribution-org-a/$export", patientAccess + "/$export", patientAccess + "/Patient/$export"} {
				if a := bulk(t, "GET", u, member, kickoffHeaders); a.status < 400 || a.status >= 500 {
					t.Errorf("member01 kicking off %s: %d %.300s", u, a.status, a.body)
				}
			}

			kick := bulk(t, "GET", m.base+"/Group/attribution-org-a/$export?_outputFormat=application/fhir%2Bndjson", orgA, kickoffHeaders)
			if kick.status != 202 || !strings.Contains(kick.contentLocation, "$export-poll-status?_jobId=") {
				t.Fatalf("kick-off: %d, Content-Location %q, %.300s", kick.status, kick.contentLocation, kick.body)
			}
			status := kick.contentLocation
			if !strings.HasPrefix(status, m.base+"/") {
				t.Fatalf("status URL %q is not under the API's base %s", status, m.base)
			}

			// Bulk Data 2.0 §Status request: poll until complete (every 0.5 s, Retry-After checked but not
			// waited for, bounded).
			var done bulkAnswer
			deadline := time.Now().Add(90 * time.Second)
			for {
				done = bulk(t, "GET", status, orgA, nil)
				if done.status != 202 || time.Now().After(deadline) {
					break
				}
				checkRetryAfter(t, done)
				time.Sleep(500 * time.Millisecond)
			}
			if done.status != 200 {
				t.Fatalf("export did not complete: %d %.300s", done.status, done.body)
			}
			// Bulk Data 2.0 §Complete Status: application/json (UTF-8), never HAPI's ISO-8859-1 label.
			if mt, params, err := mime.ParseMediaType(done.contentType); err != nil || mt != "application/json" ||
				(params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
				t.Errorf("manifest Content-Type %q, want application/json", done.contentType)
			}
			var man exportManifest
			if err := json.Unmarshal(done.body, &man); err != nil || len(man.Output) == 0 {
				t.Fatalf("manifest: %v %.500s", err, done.body)
			}
			// Every URL in it is the API's public one: the request as the client made it, the files under
			// the base the client uses (https through Envoy), never the FHIR server's own address.
			if want := m.base + "/Group/attribution-org-a/$export?"; !strings.HasPrefix(man.Request, want) {
				t.Errorf("manifest request %q, want it under %s", man.Request, want)
			}
			for _, f := range man.Error {
				if !strings.HasPrefix(f.URL, m.base+"/Binary/") {
					t.Errorf("error file URL %q is not a Binary under %s", f.URL, m.base)
				}
			}

			// Another valid client: the job's status URL and every file are the same 404 as unknown ones.
			unknown := bulk(t, "GET", m.base+"/$export-poll-status?_jobId=no-such-job", orgA, nil)
			if unknown.status != 404 {
				t.Errorf("unknown job: %d", unknown.status)
			}
			if a := bulk(t, "GET", status, orgB, nil); a.status != 404 || !bytes.Equal(a.body, unknown.body) {
				t.Errorf("org-b polling org-a's job: %d %.300s, want the unknown job's 404", a.status, a.body)
			}

			sawPatients := map[string]bool{}
			for _, f := range man.Output {
				if !strings.HasPrefix(f.URL, m.base+"/Binary/") {
					t.Errorf("file URL %q is not a Binary under %s", f.URL, m.base)
					continue
				}
				if a := bulk(t, "GET", f.URL, orgB, map[string]string{"Accept": "application/fhir+ndjson"}); a.status != 404 {
					t.Errorf("org-b downloading %s: %d", f.Type, a.status)
				}
				a := bulk(t, "GET", f.URL, orgA, map[string]string{"Accept": "application/fhir+ndjson"})
				if a.status != 200 {
					t.Errorf("org-a downloading %s: %d %.300s", f.Type, a.status, a.body)
					continue
				}
				checkExportLines(t, f.Type, a.body, orgAPermitted)
				if f.Type == "Patient" {
					for _, l := range bytes.Split(bytes.TrimSpace(a.body), []byte("\n")) {
						var p struct{ ID string }
						_ = json.Unmarshal(l, &p)
						sawPatients[p.ID] = true
					}
				}
			}
			var saw []string
			for p := range sawPatients {
				saw = append(saw, p)
			}
			slices.Sort(saw)
			if !slices.Equal(saw, orgAPermitted) {
				t.Errorf("exported Patients %v, want exactly %v (member-12 opted out)", saw, orgAPermitted)
			}
		})
	}
}

// Bulk Data 2.0 §Delete: only the client that started a job may cancel it; another client gets the unknown
// job's 404 and the job goes on.
func TestOnlyTheStarterCancelsAnExport(t *testing.T) {
	evidence.Proves(t, "CMS-PROV-05")
	orgA := providerToken(t, "provider-org-a")
	orgB := providerToken(t, "provider-org-b")
	for _, m := range providerModes {
		t.Run(m.name, func(t *testing.T) {
			kick := bulk(t, "GET", m.base+"/Group/attribution-org-a/$export?_type=Patient", orgA, kickoffHeaders)
			if kick.status != 202 {
				t.Fatalf("kick-off: %d %.300s", kick.status, kick.body)
			}
			if a := bulk(t, "DELETE", kick.contentLocation, orgB, nil); a.status != 404 {
				t.Errorf("org-b cancelling org-a's job: %d %.300s", a.status, a.body)
			}
			if a := bulk(t, "DELETE", kick.contentLocation, orgA, nil); a.status < 200 || a.status > 299 {
				t.Errorf("org-a cancelling its own job: %d %.300s", a.status, a.body)
			}
		})
	}
}
