package attribution

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
)

// fakeFHIR is a FHIR server serving attribution Groups and PractitionerRoles shaped like test/seed, a few
// entries per page, with next links written for another host (as HAPI does behind a different address).
type fakeFHIR struct {
	*httptest.Server
	groups   []map[string]any
	roles    []map[string]any
	pageSize int
	calls    atomic.Int64
	fail     atomic.Bool
	gate     chan struct{} // when set, every request waits for it to close
}

func newFakeFHIR(t *testing.T) *fakeFHIR {
	f := &fakeFHIR{groups: seedGroups(), roles: seedRoles(), pageSize: 100}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeFHIR) base() string { return f.URL + "/fhir" }

func (f *fakeFHIR) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.fail.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	path := r.URL.Path
	offset := 0
	if p := q.Get("_getpages"); p != "" { // a paging link: the original search is in the page id
		orig, _ := url.ParseQuery(p)
		path, q = orig.Get("path"), orig
		offset, _ = strconv.Atoi(r.URL.Query().Get("_getpagesoffset"))
	}
	var all []map[string]any
	switch path {
	case "/fhir/Group":
		for _, g := range f.groups {
			if me := q.Get("managing-entity"); me == "" || g["managingEntity"].(map[string]any)["reference"] == me {
				all = append(all, g)
			}
		}
	case "/fhir/PractitionerRole":
		for _, pr := range f.roles {
			if pr["practitioner"].(map[string]any)["reference"] == q.Get("practitioner") {
				all = append(all, pr)
			}
		}
	default:
		http.Error(w, "unknown", http.StatusNotFound)
		return
	}
	end := min(offset+f.pageSize, len(all))
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": len(all)}
	var entries []any
	for _, res := range all[offset:end] {
		entries = append(entries, map[string]any{"resource": res})
	}
	b["entry"] = entries
	if end < len(all) {
		orig := url.Values{}
		for k, v := range q {
			orig[k] = v
		}
		orig.Set("path", path)
		next := "http://hapi.internal:8080/fhir?" + url.Values{"_getpages": {orig.Encode()}, "_getpagesoffset": {strconv.Itoa(end)}}.Encode()
		b["link"] = []any{map[string]any{"relation": "next", "url": next}}
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	_ = json.NewEncoder(w).Encode(b)
}

var orgs = []string{"org-a", "org-b", "org-c"}

// seedGroups builds the attribution Groups the way test/seed does: member NN is attributed to
// org[(NN-1) mod 3], members 04, 08, … also to org[NN mod 3]; the practitioner is pract-(2·org + NN mod 2 + 1).
func seedGroups() []map[string]any {
	var groups []map[string]any
	for oi, org := range orgs {
		var members []any
		for n := 1; n <= 24; n++ {
			if (n-1)%3 != oi && (n%4 != 0 || n%3 != oi) {
				continue
			}
			ext := []any{
				map[string]any{"url": ATRAttributedProvider, "valueReference": map[string]any{"reference": fmt.Sprintf("Practitioner/pract-%02d", oi*2+n%2+1)}},
				map[string]any{"url": "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-coverageReference", "valueReference": map[string]any{"reference": fmt.Sprintf("Coverage/coverage-member-%02d", n)}},
			}
			if n == 5 || n == 12 || n == 20 {
				ext = append(ext, map[string]any{"url": "https://fhirwall.example/StructureDefinition/provider-access-opt-out", "valueBoolean": true})
			}
			members = append(members, map[string]any{
				"extension": ext, "entity": map[string]any{"reference": fmt.Sprintf("Patient/member-%02d", n)},
				"period": map[string]any{"start": "2024-01-01"}, "inactive": false,
			})
		}
		groups = append(groups, map[string]any{
			"resourceType": "Group", "id": "attribution-" + org, "active": true, "type": "person", "actual": true,
			"managingEntity": map[string]any{"reference": "Organization/" + org}, "member": members,
		})
	}
	return groups
}

func seedRoles() []map[string]any {
	var roles []map[string]any
	for i := 1; i <= 6; i++ {
		roles = append(roles, map[string]any{
			"resourceType": "PractitionerRole", "id": fmt.Sprintf("pract-role-%02d", i), "active": true,
			"practitioner": map[string]any{"reference": fmt.Sprintf("Practitioner/pract-%02d", i)},
			"organization": map[string]any{"reference": "Organization/" + orgs[(i-1)/2]},
		})
	}
	return roles
}
