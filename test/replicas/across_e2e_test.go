//go:build e2e

package replicas

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

type answer struct {
	status int
	header http.Header
	body   []byte
}

// get sends one GET with a bearer token and notes the answer for the audit check.
func get(t *testing.T, what, url, token string, header map[string]string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", what, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	record(what, resp.StatusCode, resp.Header)
	return answer{resp.StatusCode, resp.Header, b}
}

func memberToken(t *testing.T) string {
	t.Helper()
	tok, err := stackauth.Member(context.Background(), "member01",
		"openid", "fhirUser", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/Patient.rs")
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// page is what a searchset page says that must not depend on the replica that answered it.
type page struct {
	ids  []string
	next string
}

func readPage(t *testing.T, what string, a answer) page {
	t.Helper()
	if a.status != 200 {
		t.Fatalf("%s: %d %.300s", what, a.status, a.body)
	}
	var b struct {
		Link  []struct{ Relation, URL string }
		Entry []struct {
			Resource struct{ ResourceType, ID string }
		}
	}
	if err := json.Unmarshal(a.body, &b); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var p page
	for _, e := range b.Entry {
		p.ids = append(p.ids, e.Resource.ResourceType+"/"+e.Resource.ID)
	}
	for _, l := range b.Link {
		if l.Relation == "next" {
			p.next = l.URL
		}
	}
	return p
}

// walk follows a member's EOB search to its last page, the i-th request on faces[i % len(faces)], and returns
// each page's resources.
func walk(t *testing.T, faces []string, token string) [][]string {
	t.Helper()
	p := readPage(t, "first page", get(t, "first page on "+faces[0], faces[0]+"/patient-access/fhir/ExplanationOfBenefit?_count=2", token, nil))
	pages := [][]string{p.ids}
	for i := 1; p.next != ""; i++ {
		if i > 50 {
			t.Fatal("more than 50 pages")
		}
		face := faces[i%len(faces)]
		what := fmt.Sprintf("page %d on %s", i+1, face)
		p = readPage(t, what, get(t, what, onFace(t, p.next, face), token, nil))
		pages = append(pages, p.ids)
	}
	return pages
}

// TestMemberPagesAndProviderExportAcrossReplicas: a member's search and each of its next pages answered by a
// different replica give the pages one replica gives; a provider's export started on one replica is polled on
// another and its files read on a third. Paging bindings and export jobs live in PostgreSQL, not in a replica.
func TestMemberPagesAndProviderExportAcrossReplicas(t *testing.T) {
	evidence.Proves(t, "OPS-REPLICA-01")
	setup(t)
	member := memberToken(t)
	provider, err := stackauth.Backend(context.Background(), "provider-org-a", "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			one := walk(t, m.faces[:1], member)
			spread := walk(t, m.faces, member)
			if len(one) < 2 {
				t.Fatalf("member01's search has %d page(s) at _count=2: the test needs a next page", len(one))
			}
			if !slices.EqualFunc(one, spread, slices.Equal[[]string]) {
				t.Fatalf("pages across replicas differ from one replica's:\n one:    %v\n spread: %v", one, spread)
			}
			t.Logf("%d pages, each from another face: %v", len(spread), spread)

			face := func(i int) string { return m.faces[i%len(m.faces)] }
			kick := get(t, "export kick-off on "+face(0), face(0)+"/provider-access/fhir/Group/attribution-org-a/$export?_outputFormat=application/fhir%2Bndjson",
				provider.AccessToken, map[string]string{"Prefer": "respond-async"})
			status := kick.header.Get("Content-Location")
			if kick.status != 202 || !strings.Contains(status, "$export-poll-status?_jobId=") {
				t.Fatalf("kick-off on %s: %d, Content-Location %q, %.300s", face(0), kick.status, status, kick.body)
			}
			var done answer
			for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
				done = get(t, "export poll on "+face(1), onFace(t, status, face(1)), provider.AccessToken, nil)
				if done.status != 202 || time.Now().After(deadline) {
					break
				}
			}
			if done.status != 200 {
				t.Fatalf("export polled on %s: %d %.300s", face(1), done.status, done.body)
			}
			var man struct{ Output []struct{ Type, URL string } }
			if err := json.Unmarshal(done.body, &man); err != nil || len(man.Output) == 0 {
				t.Fatalf("manifest: %v %.500s", err, done.body)
			}
			lines := 0
			for _, o := range man.Output {
				f := get(t, "export file on "+face(2), onFace(t, o.URL, face(2)), provider.AccessToken, map[string]string{"Accept": "application/fhir+ndjson"})
				if f.status != 200 {
					t.Errorf("%s file read on %s: %d %.300s", o.Type, face(2), f.status, f.body)
				}
				// A file may be empty once enforcement dropped what the provider may not see; not all of them.
				lines += strings.Count(strings.TrimSpace(string(f.body)), "\n") + min(1, len(strings.TrimSpace(string(f.body))))
			}
			if lines == 0 {
				t.Errorf("the export's %d files, read on %s, hold no resource", len(man.Output), face(2))
			}
			t.Logf("export: kicked off on %s, polled on %s, %d files (%d lines) read on %s", face(0), face(1), len(man.Output), lines, face(2))
			// Another provider's client learns nothing of the job on any replica.
			other, err := stackauth.Backend(context.Background(), "provider-org-b", "system/*.rs")
			if err != nil {
				t.Fatal(err)
			}
			if a := get(t, "other provider polling on "+face(2), onFace(t, status, face(2)), other.AccessToken, nil); a.status != 404 {
				t.Errorf("provider-org-b polling org-a's job on %s: %d %.300s", face(2), a.status, a.body)
			}
		})
	}
}
