package decision

import (
	"context"
	"errors"
	"github.com/fhirwall/fhirwall/internal/token"
	"strings"
	"testing"
	"time"
)

func TestInMemoryPagesBindsToTheFirstOwnerUntilExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	p := &InMemoryPages{Now: func() time.Time { return now }}
	if err := p.Bind(ctx, "pg1", "app-a|P", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := p.Bind(ctx, "pg1", "app-b|P", time.Minute); !errors.Is(err, ErrPageBound) {
		t.Fatalf("rebinding to another client: %v", err)
	}
	if err := p.Bind(ctx, "pg1", "app-a|P", time.Minute); err != nil {
		t.Fatalf("rebinding to the same owner: %v", err)
	}
	if o, ok, _ := p.Owner(ctx, "pg1"); !ok || o != "app-a|P" {
		t.Fatalf("owner %q %v", o, ok)
	}
	now = now.Add(2 * time.Minute)
	if _, ok, _ := p.Owner(ctx, "pg1"); ok {
		t.Fatal("an expired binding still has an owner")
	}
	if err := p.Bind(ctx, "pg1", "app-b|P", time.Minute); err != nil {
		t.Fatalf("binding after expiry: %v", err)
	}
}

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
