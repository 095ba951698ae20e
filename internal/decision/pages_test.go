package decision

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/token"
)

func TestInMemoryPagesIsBounded(t *testing.T) {
	ctx := context.Background()
	p := &InMemoryPages{Max: 3}
	for _, id := range []string{"a", "b", "c", "d"} {
		if err := p.Bind(ctx, id, "o", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := p.Owner(ctx, "a"); ok {
		t.Fatal("the oldest binding was not evicted")
	}
	for _, id := range []string{"b", "c", "d"} {
		if _, ok, _ := p.Owner(ctx, id); !ok {
			t.Fatalf("%s evicted", id)
		}
	}
	if len(p.owner) > 3 {
		t.Fatalf("%d bindings kept", len(p.owner))
	}
}

func TestPageOwnerIsClientPatientAndScopes(t *testing.T) {
	d := decisionFor("member-01")
	owner := PageOwner(d)
	if !strings.HasPrefix(owner, "patient-app|member-01|") {
		t.Fatalf("got %q", owner)
	}
	d.Identity.Scopes = []string{"patient/Patient.rs"}
	if PageOwner(d) == owner {
		t.Fatal("a token with other scopes owns the same pages")
	}
	d.Identity.Scopes = []string{"patient/*.rs"}
	if PageOwner(d) != owner {
		t.Fatal("the same scopes give another owner")
	}
	dr := &Decision{Identity: &token.Identity{ClientID: "provider-app", FHIRUser: "Practitioner/pract-01", Scopes: []string{"user/*.rs"}}}
	colleague := &Decision{Identity: &token.Identity{ClientID: "provider-app", FHIRUser: "Practitioner/pract-02", Scopes: []string{"user/*.rs"}}}
	if PageOwner(dr) == PageOwner(colleague) {
		t.Fatal("two practitioners of one app own each other's pages")
	}
	if got := PageOwner(&Decision{}); got != "|" {
		t.Fatalf("got %q", got)
	}
}

// fakeDownPages is a page store that cannot be reached.
type fakeDownPages struct{}

var errFakePagesDown = errors.New("fake page store down")

func (fakeDownPages) Bind(context.Context, string, string, time.Duration) error {
	return errFakePagesDown
}
func (fakeDownPages) Owner(context.Context, string) (string, bool, error) {
	return "", false, errFakePagesDown
}

func TestPagingFailsClosedWhenThePageStoreIsDown(t *testing.T) {
	t.Run("following a next link is refused with 503, never decided without its binding", func(t *testing.T) {
		c, pol, _ := newRegistryCore(fakeRealmRegistry())
		c.Pages = fakeDownPages{}
		d := c.Decide(context.Background(), Input{API: "patient-access", Method: "GET", Path: "",
			RawQuery: "_getpages=5c1f-uuid&_getpagesoffset=20", Authorization: []string{"Bearer patient-app"}})
		if d.Allow || d.Refusal.Status != 503 || !slices.Contains(d.Reasons, "page_store_unavailable") {
			t.Fatalf("allow %v, status %d, reasons %v; want 503 page_store_unavailable", d.Allow, d.Refusal.Status, d.Reasons)
		}
		if pol.input != nil {
			t.Fatal("the policy was asked without the paging fact")
		}
	})
	t.Run("a search answer whose next link cannot be bound is refused with 503 and nothing of it leaves", func(t *testing.T) {
		c := newEnforcingCore()
		c.Pages = fakeDownPages{}
		body := bundle("searchset", 40, []string{
			"next http://127.0.0.1:8090/fhir?_getpages=5c1f-uuid&_getpagesoffset=20&_count=20&_bundletype=searchset",
		}, entry{eob("e1", me), "match"})
		got, err := c.EnforceResponse(context.Background(), decisionFor(me), 200, fhirJSON, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != 503 || !bytes.Equal(got.Body, outcome.Unavailable.Body()) || len(got.Patients) != 0 {
			t.Fatalf("status %d, patients %v, body %s; want 503 and nothing of the answer", got.Status, got.Patients, got.Body)
		}
	})
	t.Run("a search answer without paging links does not need the store", func(t *testing.T) {
		c := newEnforcingCore()
		c.Pages = fakeDownPages{}
		body := bundle("searchset", 1, nil, entry{eob("e1", me), "match"})
		if got, err := c.EnforceResponse(context.Background(), decisionFor(me), 200, fhirJSON, []byte(body)); err != nil || got.Status != 200 {
			t.Fatalf("status %d, %v", got.Status, err)
		}
	})
}
