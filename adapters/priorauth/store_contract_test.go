package priorauth

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Store contract: one table of behaviours that every Store keeps, run against MemoryStore here and
// against Postgres in postgres_e2e_test.go. A store may hold rows of earlier runs (the PostgreSQL table
// outlives a test), so every case makes its own ids and looks only at its own rows.

type storeContractCase struct {
	name string
	run  func(t *testing.T, s Store, ids *contractIDs)
}

// contractIDs hands out ids unique to one case of one run.
type contractIDs struct {
	prefix string
	n      int
}

func (c *contractIDs) next() string {
	c.n++
	return fmt.Sprintf("%s-%d", c.prefix, c.n)
}

func (c *contractIDs) mine(rs []Request) []Request {
	var out []Request
	for _, r := range rs {
		if strings.HasPrefix(r.ID, c.prefix+"-") {
			out = append(out, r)
		}
	}
	return out
}

// contractBase is a time far from now with sub-microsecond noise, in a zone other than UTC: the stores
// must give back UTC at microsecond precision.
var contractBase = time.Date(2031, 5, 4, 10, 30, 0, 123456789, time.FixedZone("EST", -5*3600))

func contractRequest(id string, received time.Time, expedited bool) Request {
	window := 7 * 24 * time.Hour
	basis := "standard"
	if expedited {
		window, basis = 72*time.Hour, "levelOfServiceCode"
	}
	return Request{
		ID: id, ClientID: "provider-org-a", Provider: "Organization/org-a",
		OrgIdentifiers: []string{"http://hl7.org/fhir/sid/us-npi|1234567893"},
		Patient:        "Patient/member-01", ClaimIdentifier: "urn:uuid:claims|" + id,
		ClaimID: id, ClaimResponseID: id + "-response", EOBID: id + "-eob",
		Received: received, Expedited: expedited, DeadlineBasis: basis, Deadline: received.Add(window),
		Status: StatusPended, Version: 1, DecidedBy: "rules",
		Items: []ItemDecision{
			{Sequence: 1, Product: Code{System: "http://www.ama-assn.org/go/cpt", Code: "33510"}, Verdict: VerdictPended, Rule: "cabg-review"},
			{Sequence: 2, Product: Code{System: "http://www.ama-assn.org/go/cpt", Code: "70551"}, Verdict: VerdictApproved, Rule: "mri-auto"},
		},
		ResponseBundle: []byte(`{"resourceType":"Bundle","id":"` + id + `","type":"collection"}`),
	}
}

// decided is r decided by a reviewer: every item approved, one version on.
func contractDecided(r Request, at time.Time) Request {
	next := storeClone(r)
	next.Status, next.DecidedAt, next.DecidedBy, next.Version = StatusApproved, at, "dr-reviewer", r.Version+1
	next.Items[0].Verdict, next.Items[0].Rule = VerdictApproved, "review"
	next.Extended, next.AfterAppeal = true, true
	next.ResponseBundle = []byte(`{"resourceType":"Bundle","id":"` + r.ID + `","type":"collection","v":2}`)
	return next
}

// stored is r as a store gives it back.
func contractStored(r Request) Request { return storeNormalised(r) }

func contractInsert(t *testing.T, s Store, r Request) {
	t.Helper()
	if err := s.Insert(context.Background(), r); err != nil {
		t.Fatalf("insert %s: %v", r.ID, err)
	}
}

func contractGet(t *testing.T, s Store, id string) Request {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return r
}

func contractSame(t *testing.T, what string, got, want Request) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func contractIDList(rs []Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

var storeContract = []storeContractCase{
	{"an inserted request comes back whole, its times in UTC at microsecond precision", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, true)
		contractInsert(t, s, r)
		got := contractGet(t, s, r.ID)
		contractSame(t, "get", got, contractStored(r))
		if got.Received.Location() != time.UTC || got.Received.Nanosecond() != 123456000 {
			t.Fatalf("received %v, want UTC truncated to the microsecond", got.Received)
		}
	}},
	{"an unknown id is ErrNotFound", func(t *testing.T, s Store, id *contractIDs) {
		if _, err := s.Get(context.Background(), id.next()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get: %v, want ErrNotFound", err)
		}
	}},
	{"a second insert of an id fails and leaves the first", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, false)
		contractInsert(t, s, r)
		other := r
		other.Patient = "Patient/member-02"
		if err := s.Insert(context.Background(), other); err == nil {
			t.Fatal("a duplicate id was inserted")
		}
		contractSame(t, "after the duplicate", contractGet(t, s, r.ID), contractStored(r))
	}},
	{"a caller changing its copy does not change the stored request", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, false)
		contractInsert(t, s, r)
		r.Items[0].Verdict, r.ResponseBundle[0], r.OrgIdentifiers[0] = VerdictDenied, 'X', "changed"
		got := contractGet(t, s, r.ID)
		got.Items[1].Verdict = VerdictDenied
		contractSame(t, "stored", contractGet(t, s, r.ID), contractStored(contractRequest(r.ID, contractBase, false)))
	}},
	{"FindByClaimIdentifier answers the provider's latest request and no one else's", func(t *testing.T, s Store, id *contractIDs) {
		first := contractRequest(id.next(), contractBase, false)
		resubmitted := contractRequest(id.next(), contractBase.Add(time.Hour), false)
		resubmitted.ClaimIdentifier = first.ClaimIdentifier
		sameTime := contractRequest(id.next(), contractBase.Add(time.Hour), false) // inserted last at the same time: latest
		sameTime.ClaimIdentifier = first.ClaimIdentifier
		for _, r := range []Request{first, resubmitted, sameTime} {
			contractInsert(t, s, r)
		}
		got, err := s.FindByClaimIdentifier(context.Background(), "Organization/org-a", first.ClaimIdentifier)
		if err != nil || got.ID != sameTime.ID {
			t.Fatalf("find: %s, %v; want %s", got.ID, err, sameTime.ID)
		}
		if _, err := s.FindByClaimIdentifier(context.Background(), "Organization/org-b", first.ClaimIdentifier); !errors.Is(err, ErrNotFound) {
			t.Fatalf("another provider's find: %v, want ErrNotFound", err)
		}
	}},
	{"a decision is stored with its fields and nothing else of the caller's copy", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, false)
		contractInsert(t, s, r)
		next := contractDecided(r, contractBase.Add(26*time.Hour))
		next.Patient, next.Provider, next.Deadline = "Patient/someone-else", "Organization/org-b", contractBase
		if err := s.Decide(context.Background(), next); err != nil {
			t.Fatal(err)
		}
		want := contractStored(contractDecided(r, contractBase.Add(26*time.Hour)))
		contractSame(t, "decided", contractGet(t, s, r.ID), want)
	}},
	{"a decision at the wrong version or of a decided request is ErrAlreadyDecided", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, false)
		contractInsert(t, s, r)
		stale := contractDecided(r, contractBase.Add(time.Hour))
		stale.Version = 3
		if err := s.Decide(context.Background(), stale); !errors.Is(err, ErrAlreadyDecided) {
			t.Fatalf("version 3 on version 1: %v, want ErrAlreadyDecided", err)
		}
		if err := s.Decide(context.Background(), contractDecided(r, contractBase.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		again := contractDecided(contractGet(t, s, r.ID), contractBase.Add(2*time.Hour))
		again.Status = StatusDenied
		if err := s.Decide(context.Background(), again); !errors.Is(err, ErrAlreadyDecided) {
			t.Fatalf("deciding an approved request: %v, want ErrAlreadyDecided", err)
		}
		if got := contractGet(t, s, r.ID); got.Status != StatusApproved || got.Version != 2 {
			t.Fatalf("after the refused decision: %s v%d, want approved v2", got.Status, got.Version)
		}
	}},
	{"deciding an unknown id is ErrNotFound", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, false)
		if err := s.Decide(context.Background(), contractDecided(r, contractBase)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("decide: %v, want ErrNotFound", err)
		}
	}},
	{"a review that leaves an item pended keeps the request in the queue at the next version", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, false)
		contractInsert(t, s, r)
		partial := storeClone(r)
		partial.Version, partial.DecidedBy = 2, "dr-reviewer"
		partial.Items[1].Verdict = VerdictDenied
		if err := s.Decide(context.Background(), partial); err != nil {
			t.Fatal(err)
		}
		pended, err := s.Pended(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := id.mine(pended); len(got) != 1 || got[0].Version != 2 || !got[0].DecidedAt.IsZero() {
			t.Fatalf("pended after a partial review: %+v", got)
		}
		if err := s.Decide(context.Background(), contractDecided(contractGet(t, s, r.ID), contractBase.Add(time.Hour))); err != nil {
			t.Fatalf("the second review at version 3: %v", err)
		}
	}},
	{"of reviewers deciding at once exactly one wins", func(t *testing.T, s Store, id *contractIDs) {
		r := contractRequest(id.next(), contractBase, true)
		contractInsert(t, s, r)
		const reviewers = 8
		errs := make([]error, reviewers)
		var wg sync.WaitGroup
		for i := range reviewers {
			wg.Go(func() {
				next := contractDecided(r, contractBase.Add(time.Hour))
				next.DecidedBy = fmt.Sprintf("reviewer-%d", i)
				errs[i] = s.Decide(context.Background(), next)
			})
		}
		wg.Wait()
		winners := 0
		for _, err := range errs {
			switch {
			case err == nil:
				winners++
			case !errors.Is(err, ErrAlreadyDecided):
				t.Fatalf("a loser's error: %v, want ErrAlreadyDecided", err)
			}
		}
		if winners != 1 {
			t.Fatalf("%d reviewers won, want 1", winners)
		}
		if got := contractGet(t, s, r.ID); got.Version != 2 {
			t.Fatalf("version %d after one decision, want 2", got.Version)
		}
	}},
	{"Pended lists the pended requests only, the nearest deadline first", func(t *testing.T, s Store, id *contractIDs) {
		standard := contractRequest(id.next(), contractBase, false)                       // due in 7 days
		expedited := contractRequest(id.next(), contractBase.Add(time.Hour), true)        // due in 73 hours
		laterExpedited := contractRequest(id.next(), contractBase.Add(2*time.Hour), true) // due in 74 hours
		done := contractRequest(id.next(), contractBase, true)
		for _, r := range []Request{standard, expedited, laterExpedited, done} {
			contractInsert(t, s, r)
		}
		if err := s.Decide(context.Background(), contractDecided(done, contractBase.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		pended, err := s.Pended(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := []string{expedited.ID, laterExpedited.ID, standard.ID}
		if got := contractIDList(id.mine(pended)); !reflect.DeepEqual(got, want) {
			t.Fatalf("pended %v, want %v", got, want)
		}
	}},
	{"Received lists [from, to) in order of receipt, decided or not", func(t *testing.T, s Store, id *contractIDs) {
		from := contractBase.Truncate(time.Microsecond).Add(-time.Minute) // a bound the stores can hold exactly
		before := contractRequest(id.next(), from.Add(-time.Microsecond), false)
		atFrom := contractRequest(id.next(), from, false)
		inside := contractRequest(id.next(), from.Add(10*time.Minute), false)
		atTo := contractRequest(id.next(), from.Add(time.Hour), false)
		for _, r := range []Request{inside, before, atTo, atFrom} {
			contractInsert(t, s, r)
		}
		if err := s.Decide(context.Background(), contractDecided(inside, contractBase.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		got, err := s.Received(context.Background(), from, from.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		mine := id.mine(got)
		if want := []string{atFrom.ID, inside.ID}; !reflect.DeepEqual(contractIDList(mine), want) {
			t.Fatalf("received %v, want %v", contractIDList(mine), want)
		}
		if mine[1].Status != StatusApproved {
			t.Fatalf("the decided request listed as %s", mine[1].Status)
		}
	}},
	{"a sandbox request is kept and read back, but in no queue and no report", func(t *testing.T, s Store, id *contractIDs) {
		ctx := context.Background()
		real, sandbox := contractRequest(id.next(), contractBase, false), contractRequest(id.next(), contractBase, false)
		sandbox.Sandbox = true
		for _, r := range []Request{real, sandbox} {
			if err := s.Insert(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Get(ctx, sandbox.ID)
		if err != nil || !reflect.DeepEqual(got, contractStored(sandbox)) {
			t.Fatalf("get %+v, %v", got, err)
		}
		if found, err := s.FindByClaimIdentifier(ctx, sandbox.Provider, sandbox.ClaimIdentifier); err != nil || !found.Sandbox {
			t.Fatalf("find by claim identifier %+v, %v", found, err)
		}
		pended, err := s.Pended(ctx)
		if err != nil {
			t.Fatal(err)
		}
		received, err := s.Received(ctx, contractBase.Add(-time.Hour), contractBase.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for what, rs := range map[string][]Request{"queue": pended, "report": received} {
			if ids := contractIDList(id.mine(rs)); !reflect.DeepEqual(ids, []string{real.ID}) {
				t.Errorf("the %s lists %v, want the real request %s only", what, ids, real.ID)
			}
		}
		next := contractDecided(sandbox, contractBase.Add(time.Minute))
		if err := s.Decide(ctx, next); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, sandbox.ID); err != nil || !got.Sandbox {
			t.Fatalf("a decision lost the sandbox mark: %+v, %v", got, err)
		}
	}},
}

// runStoreContract runs every case against a store from open, each with ids of its own, which all begin
// with the prefix open is given (a shared store removes them when the test ends).
func runStoreContract(t *testing.T, open func(t *testing.T, idPrefix string) Store) {
	run := time.Now().UnixNano()
	for i, tc := range storeContract {
		t.Run(tc.name, func(t *testing.T) {
			prefix := fmt.Sprintf("contract-%d-%d", run, i)
			tc.run(t, open(t, prefix), &contractIDs{prefix: prefix})
		})
	}
}

func TestMemoryStoreKeepsTheStoreContract(t *testing.T) {
	runStoreContract(t, func(*testing.T, string) Store { return NewMemoryStore() })
}
