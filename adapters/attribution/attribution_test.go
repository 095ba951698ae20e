package attribution

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/fhirwall/fhirwall/internal/decision"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

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
	clock := &fakeClock{t: now}
	if o.Now == nil {
		o.Now = clock.Now
	}
	return New(f.base(), f.Client(), o), clock
}

func members(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = "member-" + id
	}
	return out
}

func TestProvidersSeeTheirSeedAttribution(t *testing.T) {
	cases := []struct {
		provider string
		want     decision.AttributionList
	}{
		{"Organization/org-a", decision.AttributionList{GroupID: "attribution-org-a", Patients: members("01", "04", "07", "10", "12", "13", "16", "19", "22", "24")}},
		{"Organization/org-b", decision.AttributionList{GroupID: "attribution-org-b", Patients: members("02", "04", "05", "08", "11", "14", "16", "17", "20", "23")}},
		{"Organization/org-c", decision.AttributionList{GroupID: "attribution-org-c", Patients: members("03", "06", "08", "09", "12", "15", "18", "20", "21", "24")}},
		// Through PractitionerRole → org-a, narrowed to the members the ATR extension attributes to them.
		{"Practitioner/pract-01", decision.AttributionList{GroupID: "attribution-org-a", Patients: members("04", "10", "12", "16", "22", "24")}},
		{"Practitioner/pract-02", decision.AttributionList{GroupID: "attribution-org-a", Patients: members("01", "07", "13", "19")}},
	}
	f := newFakeFHIR(t)
	f.pageSize = 1 // every search pages, through next links written for another host
	c, _ := newClient(f, Options{})
	for _, tc := range cases {
		t.Run(tc.provider, func(t *testing.T) {
			got, err := c.Attributed(context.Background(), tc.provider)
			if err != nil {
				t.Fatal(err)
			}
			if got.GroupID != tc.want.GroupID || !slices.Equal(got.Patients, tc.want.Patients) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestOnlyCurrentMembershipsCount(t *testing.T) {
	f := newFakeFHIR(t)
	g := f.groups[0]
	extra := []any{
		map[string]any{"entity": map[string]any{"reference": "Patient/inactive"}, "inactive": true},
		map[string]any{"entity": map[string]any{"reference": "Patient/ended"}, "period": map[string]any{"start": "2020-01-01", "end": "2026-05-31"}},
		map[string]any{"entity": map[string]any{"reference": "Patient/ends-today"}, "period": map[string]any{"end": "2026-06-01"}},
		map[string]any{"entity": map[string]any{"reference": "Patient/not-yet"}, "period": map[string]any{"start": "2026-07-01"}},
		map[string]any{"entity": map[string]any{"reference": "Patient/garbled"}, "period": map[string]any{"end": "soon"}},
		map[string]any{"entity": map[string]any{"reference": "http://hapi/fhir/Patient/absolute/_history/3"}},
		map[string]any{"entity": map[string]any{"reference": "Practitioner/pract-01"}},
	}
	g["member"] = append(extra, g["member"].([]any)[:1]...)
	c, _ := newClient(f, Options{})
	got, err := c.Attributed(context.Background(), "Organization/org-a")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"absolute", "ends-today", "member-01"}; !slices.Equal(got.Patients, want) {
		t.Errorf("patients %v, want %v", got.Patients, want)
	}
}

func TestProviderWithoutGroupHasNoAttribution(t *testing.T) {
	f := newFakeFHIR(t)
	c, _ := newClient(f, Options{})
	for _, p := range []string{"Organization/org-z", "Practitioner/pract-99"} {
		if _, err := c.Attributed(context.Background(), p); !errors.Is(err, decision.ErrNoAttribution) {
			t.Errorf("%s: err %v, want ErrNoAttribution", p, err)
		}
	}
	before := f.calls.Load()
	if _, err := c.Attributed(context.Background(), "Organization/org-z"); !errors.Is(err, decision.ErrNoAttribution) {
		t.Errorf("err %v, want ErrNoAttribution", err)
	}
	if f.calls.Load() != before {
		t.Errorf("a cached 'no list' asked the server again")
	}
}

func TestProviderThatIsNotAReferenceIsRefusedWithoutAskingTheServer(t *testing.T) {
	f := newFakeFHIR(t)
	c, _ := newClient(f, Options{})
	for _, p := range []string{"", "org-a", "Patient/member-01", "Organization/", "Organization/a,b", "Organization/a/_history/1"} {
		if _, err := c.Attributed(context.Background(), p); err == nil || errors.Is(err, decision.ErrNoAttribution) {
			t.Errorf("%q: err %v, want a refusal", p, err)
		}
	}
	if n := f.calls.Load(); n != 0 {
		t.Errorf("server asked %d times", n)
	}
}

func TestCachedListIsServedWithoutAServerCallUntilTheTTL(t *testing.T) {
	f := newFakeFHIR(t)
	c, clock := newClient(f, Options{TTL: time.Minute})
	ctx := context.Background()
	if _, err := c.Attributed(ctx, "Organization/org-a"); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("first call: %d server calls, want 1", n)
	}
	clock.Advance(44 * time.Second)
	if _, err := c.Attributed(ctx, "Organization/org-a"); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("within 3/4 of the TTL: %d server calls, want 1", n)
	}
	// The list changes on the server; past 3/4 of the TTL a call still gets the list in hand at once and
	// refreshes it in the background, so the next call gets the new list without waiting for the server.
	f.groups[0]["member"] = f.groups[0]["member"].([]any)[:2]
	clock.Advance(2 * time.Second)
	got, err := c.Attributed(ctx, "Organization/org-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Patients) == 2 {
		t.Fatalf("the refresh ahead made the caller wait: %v", got.Patients)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for time.Now().Before(deadline) {
		if got, err = c.Attributed(ctx, "Organization/org-a"); err == nil && len(got.Patients) == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if want := members("01", "04"); !slices.Equal(got.Patients, want) {
		t.Errorf("after the refresh ahead: %v, want %v", got.Patients, want)
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("refresh ahead: %d server calls, want 2", n)
	}
}

func TestBurstOfFiftyCallersAsksTheServerOnce(t *testing.T) {
	f := newFakeFHIR(t)
	f.gate = make(chan struct{})
	c, _ := newClient(f, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			l, err := c.Attributed(context.Background(), "Organization/org-a")
			if err == nil && l.GroupID != "attribution-org-a" {
				err = errors.New("wrong list " + l.GroupID)
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
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d server calls, want 1", n)
	}
}

func TestCallerGivingUpDoesNotFailTheSharedFetch(t *testing.T) {
	f := newFakeFHIR(t)
	f.gate = make(chan struct{})
	c, _ := newClient(f, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error)
	go func() { _, err := c.Attributed(ctx, "Organization/org-a"); first <- err }()
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error)
	go func() { _, err := c.Attributed(context.Background(), "Organization/org-a"); second <- err }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	close(f.gate)
	if err := <-second; err != nil {
		t.Errorf("second caller: %v", err)
	}
}

func TestOpenBreakerFailsClosedWithoutAskingTheServer(t *testing.T) {
	f := newFakeFHIR(t)
	f.fail.Store(true)
	c, _ := newClient(f, Options{})
	for i := range 5 {
		if _, err := c.Attributed(context.Background(), "Organization/org-a"); err == nil || errors.Is(err, decision.ErrNoAttribution) {
			t.Fatalf("call %d: err %v, want an outage", i, err)
		}
	}
	f.fail.Store(false) // the server is back, but the breaker does not know yet
	_, err := c.Attributed(context.Background(), "Organization/org-a")
	if !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("err %v, want the open breaker's", err)
	}
	if n := f.calls.Load(); n != 5 {
		t.Errorf("%d server calls, want 5 (none while open)", n)
	}
}

func TestSearchWithMorePagesThanTheBoundFails(t *testing.T) {
	f := newFakeFHIR(t)
	f.pageSize = 1
	c, _ := newClient(f, Options{MaxPages: 2})
	_, err := c.Attributed(context.Background(), "Practitioner/pract-01") // PractitionerRole, then 1 Group page
	if err != nil {
		t.Fatal(err)
	}
	f.groups = append(f.groups, map[string]any{"resourceType": "Group", "id": "attribution-org-a-2",
		"managingEntity": map[string]any{"reference": "Organization/org-a"}},
		map[string]any{"resourceType": "Group", "id": "attribution-org-a-3",
			"managingEntity": map[string]any{"reference": "Organization/org-a"}})
	_, err = c.Attributed(context.Background(), "Organization/org-a")
	if !errors.Is(err, ErrTooManyPages) || !strings.Contains(err.Error(), "Group") {
		t.Errorf("err %v, want ErrTooManyPages", err)
	}
}

func TestSeveralGroupsAreMergedUnderTheFirstId(t *testing.T) {
	f := newFakeFHIR(t)
	f.groups = append(f.groups, map[string]any{"resourceType": "Group", "id": "attribution-org-a-0", "active": true,
		"managingEntity": map[string]any{"reference": "Organization/org-a"},
		"member": []any{map[string]any{"entity": map[string]any{"reference": "Patient/member-01"}},
			map[string]any{"entity": map[string]any{"reference": "Patient/member-99"}}}},
		map[string]any{"resourceType": "Group", "id": "attribution-org-a-old", "active": false,
			"managingEntity": map[string]any{"reference": "Organization/org-a"},
			"member":         []any{map[string]any{"entity": map[string]any{"reference": "Patient/member-50"}}}})
	c, _ := newClient(f, Options{})
	got, err := c.Attributed(context.Background(), "Organization/org-a")
	if err != nil {
		t.Fatal(err)
	}
	want := append(members("01", "04", "07", "10", "12", "13", "16", "19", "22", "24"), "member-99")
	if got.GroupID != "attribution-org-a" || !slices.Equal(got.Patients, want) {
		t.Errorf("got %+v, want group attribution-org-a and %v", got, want)
	}
}

func TestPractitionerManagingAGroupSeesAllOfIt(t *testing.T) {
	f := newFakeFHIR(t)
	f.groups = append(f.groups, map[string]any{"resourceType": "Group", "id": "panel-pract-03", "active": true,
		"managingEntity": map[string]any{"reference": "Practitioner/pract-03"},
		"member":         []any{map[string]any{"entity": map[string]any{"reference": "Patient/member-30"}}}})
	c, _ := newClient(f, Options{})
	got, err := c.Attributed(context.Background(), "Practitioner/pract-03")
	if err != nil {
		t.Fatal(err)
	}
	if got.GroupID != "panel-pract-03" || !slices.Equal(got.Patients, []string{"member-30"}) {
		t.Errorf("got %+v, want its own panel, not org-b's list", got)
	}
}
