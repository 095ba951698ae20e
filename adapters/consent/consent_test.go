package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// fakeFHIR serves Consents and Groups shaped like test/seed, pageSize entries per page, with next links
// written for another host (as HAPI does behind a different address).
type fakeFHIR struct {
	*httptest.Server
	consents []map[string]any
	groups   []map[string]any
	pageSize int
	calls    atomic.Int64
	fail     atomic.Bool
	gate     chan struct{}
}

func newFakeFHIR(t *testing.T) *fakeFHIR {
	f := &fakeFHIR{pageSize: 2}
	for _, n := range []int{5, 12, 20} {
		f.consents = append(f.consents, optOut(n))
	}
	other := optOut(7) // another policy: not an opt-out of Provider Access
	other["policy"] = []any{map[string]any{"uri": "https://fhirwall.example/policy/research"}}
	permit := optOut(8)
	permit["provision"] = map[string]any{"type": "permit"}
	ended := optOut(9)
	ended["provision"].(map[string]any)["period"] = map[string]any{"start": "2025-01-01", "end": "2026-05-31"}
	inactive := optOut(10)
	inactive["status"] = "inactive"
	f.consents = append(f.consents, other, permit, ended, inactive)
	for _, org := range []string{"org-a", "org-b", "org-c"} {
		var members []any
		for n := 1; n <= 24; n++ {
			m := map[string]any{"entity": map[string]any{"reference": fmt.Sprintf("Patient/member-%02d", n)}, "inactive": false}
			if n == 5 || n == 12 || n == 20 || (org == "org-c" && n == 22) {
				m["extension"] = []any{map[string]any{"url": OptOutExtension, "valueBoolean": true}}
			}
			if n == 23 { // never written false in the seed; false must not count
				m["extension"] = []any{map[string]any{"url": OptOutExtension, "valueBoolean": false}}
			}
			members = append(members, m)
		}
		f.groups = append(f.groups, map[string]any{"resourceType": "Group", "id": "attribution-" + org, "member": members})
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func optOut(n int) map[string]any {
	return map[string]any{
		"resourceType": "Consent", "id": fmt.Sprintf("provider-access-opt-out-member-%02d", n), "status": "active",
		"patient":   map[string]any{"reference": fmt.Sprintf("Patient/member-%02d", n)},
		"policy":    []any{map[string]any{"uri": OptOutPolicy}},
		"provision": map[string]any{"type": "deny", "period": map[string]any{"start": "2025-06-01"}},
	}
}

func (f *fakeFHIR) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.fail.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	q, path, offset := r.URL.Query(), r.URL.Path, 0
	if p := q.Get("_getpages"); p != "" {
		offset, _ = strconv.Atoi(q.Get("_getpagesoffset"))
		q, _ = url.ParseQuery(p)
		path = q.Get("path")
	}
	var all []map[string]any
	switch path {
	case "/fhir/Consent":
		for _, c := range f.consents {
			if s := q.Get("status"); s == "" || c["status"] == s {
				all = append(all, c)
			}
		}
	case "/fhir/Group":
		all = f.groups
	default:
		http.Error(w, "unknown", http.StatusNotFound)
		return
	}
	end := min(offset+f.pageSize, len(all))
	var entries []any
	for _, res := range all[offset:end] {
		entries = append(entries, map[string]any{"resource": res})
	}
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": entries}
	if end < len(all) {
		orig := url.Values{}
		maps.Copy(orig, q)
		orig.Set("path", path)
		next := "http://hapi.internal:8080/fhir?" + url.Values{"_getpages": {orig.Encode()}, "_getpagesoffset": {strconv.Itoa(end)}}.Encode()
		b["link"] = []any{map[string]any{"relation": "next", "url": next}}
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	_ = json.NewEncoder(w).Encode(b)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClient(f *fakeFHIR, o Options) (*Client, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	o.Now = clock.Now
	return New(f.URL+"/fhir/", f.Client(), o), clock
}

func sorted(m map[string]bool) []string {
	var out []string
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func TestOptedOutAreTheSeedsConsentsAndGroupMarks(t *testing.T) {
	f := newFakeFHIR(t)
	c, _ := newClient(f, Options{})
	got, err := c.OptedOut(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 05, 12, 20 carry both marks; 22 only the Group mark. Not: another policy (07), a permit (08), an ended
	// opt-out (09), an inactive Consent (10), the extension written false (23).
	if want := []string{"member-05", "member-12", "member-20", "member-22"}; !slices.Equal(sorted(got), want) {
		t.Errorf("opted out %v, want %v", sorted(got), want)
	}
	// 6 active Consents → 3 pages of 2; 3 Groups → 2 pages.
	if n := f.calls.Load(); n != 5 {
		t.Errorf("%d server calls, want 5", n)
	}
}

func TestCachedSetIsServedWithoutAServerCallUntilTheTTL(t *testing.T) {
	f := newFakeFHIR(t)
	c, clock := newClient(f, Options{TTL: 30 * time.Second})
	ctx := context.Background()
	first, err := c.OptedOut(ctx)
	if err != nil {
		t.Fatal(err)
	}
	calls := f.calls.Load()
	clock.Advance(22 * time.Second) // within 3/4 of the TTL: no refresh ahead either
	got, err := c.OptedOut(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != calls {
		t.Errorf("within the TTL the server was asked again")
	}
	if fmt.Sprintf("%p", got) != fmt.Sprintf("%p", first) {
		t.Errorf("the cached set was copied: a request must read it without a copy, whatever its size")
	}
	if got["member-01"] {
		t.Errorf("member-01 opted out before opting out")
	}
	f.consents = append(f.consents, optOut(1)) // member-01 opts out
	clock.Advance(8 * time.Second)
	got, err = c.OptedOut(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() == calls {
		t.Errorf("after the TTL the server was not asked")
	}
	if !got["member-01"] {
		t.Errorf("after the TTL the new opt-out is missing: %v", sorted(got))
	}
}

func TestAnOldSetIsRefreshedAheadWithoutMakingTheCallerWait(t *testing.T) {
	f := newFakeFHIR(t)
	c, clock := newClient(f, Options{TTL: 40 * time.Second})
	ctx := context.Background()
	if _, err := c.OptedOut(ctx); err != nil {
		t.Fatal(err)
	}
	f.consents = append(f.consents, optOut(1)) // member-01 opts out
	clock.Advance(31 * time.Second)            // past 3/4 of the TTL
	got, err := c.OptedOut(ctx)
	if err != nil || got["member-01"] {
		t.Fatalf("the caller waited for the refresh ahead: %v %v", sorted(got), err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !got["member-01"] {
		time.Sleep(time.Millisecond)
		if got, err = c.OptedOut(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !got["member-01"] {
		t.Fatalf("the refresh ahead never brought the new opt-out: %v", sorted(got))
	}
}

func TestBurstOfFiftyCallersFetchesOnce(t *testing.T) {
	f := newFakeFHIR(t)
	f.pageSize = 100 // one Consent page, one Group page
	f.gate = make(chan struct{})
	c, _ := newClient(f, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			got, err := c.OptedOut(context.Background())
			if err == nil && !got["member-05"] {
				err = errors.New("member-05 missing")
			}
			errs <- err
		})
	}
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the others join the flight
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("%d server calls, want 2 (one fetch: Consents, Groups)", n)
	}
}

func TestOpenBreakerFailsClosedWithoutAskingTheServer(t *testing.T) {
	f := newFakeFHIR(t)
	f.fail.Store(true)
	c, _ := newClient(f, Options{})
	for i := range 5 {
		if got, err := c.OptedOut(context.Background()); err == nil || got != nil {
			t.Fatalf("call %d: %v, %v; want an error and no set", i, got, err)
		}
	}
	f.fail.Store(false)
	got, err := c.OptedOut(context.Background())
	if !errors.Is(err, gobreaker.ErrOpenState) || got != nil {
		t.Errorf("%v, %v; want the open breaker's error", got, err)
	}
	if n := f.calls.Load(); n != 5 {
		t.Errorf("%d server calls, want 5 (none while open)", n)
	}
}

func TestIncompleteSearchIsAnError(t *testing.T) {
	f := newFakeFHIR(t)
	f.pageSize = 1
	c, _ := newClient(f, Options{MaxPages: 3})
	if _, err := c.OptedOut(context.Background()); !errors.Is(err, ErrTooManyPages) {
		t.Errorf("err %v, want ErrTooManyPages", err)
	}
}
