package payerexchange

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// fakeFHIR is a fake FHIR server for unit tests of the adapter's own logic: it holds resources in memory and
// answers the few searches the adapter makes (Coverage?identifier=&_include=Coverage:beneficiary,
// Consent?actor=&status=&patient=, each narrowed by _tag), creates, reads, transactions and Group/[id]/$export. The real HAPI
// FHIR server is exercised by test/payertopayer.
type fakeFHIR struct {
	mu        sync.Mutex
	resources map[string]map[string]any // "Type/id" → resource
	next      int
	srv       *httptest.Server
	changes   []time.Time // when a Consent was created, updated or deleted (Consent/_history)
	searches  int         // Consent searches answered
	longest   int         // the longest request URI seen
}

func newFakeFHIR(t testing.TB, resources ...map[string]any) *fakeFHIR {
	f := &fakeFHIR{resources: map[string]map[string]any{}}
	for _, r := range resources {
		f.resources[r["resourceType"].(string)+"/"+r["id"].(string)] = r
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFHIR) adapter(t testing.TB, now time.Time) (*Adapter, *decision.InMemoryJobs) {
	jobs := decision.NewInMemoryJobs(0, nil)
	x := fhirserver.NewExchanger("fake", f.srv.URL, f.srv.Client())
	a, err := New(Ports{FHIR: x, Background: x, Search: fhirserver.NewSearcher("fake", f.srv.URL, f.srv.Client(), 10), Jobs: jobs},
		slog.New(slog.DiscardHandler), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return a, jobs
}

func (f *fakeFHIR) of(typ string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for k, r := range f.resources {
		if strings.HasPrefix(k, typ+"/") {
			out = append(out, r)
		}
	}
	return out
}

// revoke sets a stored Consent's status as the payer's staff would, through the server (a new version).
func (f *fakeFHIR) revoke(c map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c["status"] = "inactive"
	f.changes = append(f.changes, time.Now())
}

func (f *fakeFHIR) create(r map[string]any) string {
	if r["resourceType"] == "Consent" {
		f.changes = append(f.changes, time.Now())
	}
	f.next++
	id := "new-" + strconv.Itoa(f.next)
	r["id"] = id
	f.resources[r["resourceType"].(string)+"/"+id] = r
	return id
}

func (f *fakeFHIR) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.longest = max(f.longest, len(r.URL.RequestURI()))
	path := strings.Trim(r.URL.Path, "/")
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/fhir+json")
	switch {
	case r.Method == "POST" && path == "":
		var b map[string]any
		_ = json.NewDecoder(r.Body).Decode(&b)
		for _, e := range b["entry"].([]any) {
			f.create(e.(map[string]any)["resource"].(map[string]any))
		}
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response"}`)
	case r.Method == "POST":
		var res map[string]any
		_ = json.NewDecoder(r.Body).Decode(&res)
		f.create(res)
		w.WriteHeader(201)
		_ = json.NewEncoder(w).Encode(res)
	case r.Method == "GET" && path == "Consent/_history":
		since, _ := time.Parse(time.RFC3339Nano, q.Get("_since"))
		var entries []any
		for _, c := range f.changes {
			if !c.Before(since) {
				entries = append(entries, map[string]any{})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "history", "entry": entries})
	case r.Method == "GET" && strings.HasSuffix(path, "/$export"):
		w.Header().Set("Content-Location", "http://fake/fhir/$export-poll-status?_jobId=exp-1")
		w.WriteHeader(202)
	case r.Method == "GET" && strings.Contains(path, "/"):
		res, ok := f.resources[path]
		if !ok {
			w.WriteHeader(404)
			return
		}
		_ = json.NewEncoder(w).Encode(res)
	case r.Method == "GET":
		var entries []any
		for k, res := range f.resources {
			if !strings.HasPrefix(k, path+"/") || !f.matches(res, q) {
				continue
			}
			entries = append(entries, map[string]any{"resource": res})
			if q.Get("_include") == "Coverage:beneficiary" {
				ref := res["beneficiary"].(map[string]any)["reference"].(string)
				if p, ok := f.resources[ref]; ok {
					entries = append(entries, map[string]any{"resource": p})
				}
			}
		}
		if path == "Consent" {
			f.searches++
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": entries,
			"meta": map[string]any{"lastUpdated": time.Now().UTC().Format(time.RFC3339Nano)}})
	default:
		w.WriteHeader(400)
	}
}

// matches implements the search parameters the adapter uses, as the FHIR server defines them.
func (f *fakeFHIR) matches(res map[string]any, q map[string][]string) bool {
	anyOf := func(param string, have []string) bool {
		vals, ok := q[param]
		if !ok {
			return true
		}
		for _, want := range strings.Split(vals[0], ",") {
			for _, h := range have {
				if h == want {
					return true
				}
			}
		}
		return false
	}
	var ids, actors, tags []string
	for _, tg := range list(obj(res["meta"])["tag"]) {
		tags = append(tags, str(obj(tg)["system"])+"|"+str(obj(tg)["code"]))
	}
	for _, id := range list(res["identifier"]) {
		ids = append(ids, str(obj(id)["value"]))
	}
	for _, a := range list(obj(res["provision"])["actor"]) {
		actors = append(actors, str(obj(obj(a)["reference"])["reference"]))
	}
	return anyOf("identifier", ids) && anyOf("actor", actors) && anyOf("status", []string{str(res["status"])}) &&
		anyOf("patient", []string{str(obj(res["patient"])["reference"])}) && anyOf("_tag", tags)
}
