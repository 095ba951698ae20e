package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBucketsArePerAPIAndClientAndUnknownTiersShareTheAnonymousOne(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(Limits{
		Tiers:     map[string]Rate{"standard": {PerSecond: 1, Burst: 2}, "backend": {PerSecond: 5}},
		PerAPI:    map[string]map[string]Rate{"provider-access": {"standard": {PerSecond: 1, Burst: 1}}},
		Anonymous: Rate{PerSecond: 1, Burst: 1},
	}, func() time.Time { return now })
	take := func(api, client, tier string, n int) (allowed int) {
		for range n {
			if ok, _ := l.Allow(api, client, tier); ok {
				allowed++
			}
		}
		return allowed
	}
	cases := []struct {
		name              string
		api, client, tier string
		try, want         int
	}{
		{"standard burst", "patient-access", "app-a", "standard", 5, 2},
		{"another client, own bucket", "patient-access", "app-b", "", 5, 2}, // empty tier is standard
		{"same client, another API, its override", "provider-access", "app-a", "standard", 5, 1},
		{"backend tier, burst = per_second", "patient-access", "org-a", "backend", 9, 5},
		{"unknown tier: anonymous bucket", "patient-access", "app-x", "gold", 3, 1},
		{"no client: the same anonymous bucket, now empty", "patient-access", "", "", 3, 0},
	}
	for _, c := range cases {
		if got := take(c.api, c.client, c.tier, c.try); got != c.want {
			t.Errorf("%s: %d of %d allowed, want %d", c.name, got, c.try, c.want)
		}
	}
	if ok, wait := l.Allow("patient-access", "app-a", "standard"); ok || wait != time.Second {
		t.Fatalf("empty bucket: ok=%v retry after %v, want 1s", ok, wait)
	}
	now = now.Add(time.Second)
	if ok, _ := l.Allow("patient-access", "app-a", "standard"); !ok {
		t.Fatal("a second later the bucket has a token again")
	}
}

func TestUpdateReplacesLimitsWithFullBuckets(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 1}}, Anonymous: Rate{PerSecond: 1}}, func() time.Time { return now })
	l.Allow("patient-access", "app", "standard")
	if ok, _ := l.Allow("patient-access", "app", "standard"); ok {
		t.Fatal("bucket of 1 allowed 2")
	}
	l.Update(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 3}}, Anonymous: Rate{PerSecond: 1}})
	for i := range 3 {
		if ok, _ := l.Allow("patient-access", "app", "standard"); !ok {
			t.Fatalf("request %d after raising the limit refused", i+1)
		}
	}
	l.Update(Limits{})
	if ok, _ := l.Allow("patient-access", "app", "standard"); !ok {
		t.Fatal("no tiers must mean no limits")
	}
}

func TestRateValidation(t *testing.T) {
	for _, r := range []Rate{{PerSecond: 0}, {PerSecond: 10, Burst: 5}} {
		if r.Validate("x") == nil {
			t.Errorf("%+v accepted", r)
		}
	}
	if err := (Rate{PerSecond: 10, Burst: 10}).Validate("x"); err != nil {
		t.Error(err)
	}
}

// BenchmarkAllowParallel takes tokens for many clients from GOMAXPROCS goroutines, as the standalone proxy
// does once per request: a lock shared by all buckets shows as ns/op that does not fall with -cpu.
//
//	go test -run '^$' -bench AllowParallel -cpu 1,2,4 ./internal/ratelimit
func BenchmarkAllowParallel(b *testing.B) {
	l := New(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 1 << 30}}, Anonymous: Rate{PerSecond: 1 << 30}}, time.Now)
	clients := make([]string, 256)
	for i := range clients {
		clients[i] = fmt.Sprintf("app-%d", i)
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			i++
			if ok, _ := l.Allow("patient-access", clients[i%len(clients)], "standard"); !ok {
				b.Fatal("refused under an unlimited rate")
			}
		}
	})
}

// TestClientsKeepTheirOwnBucketsAcrossShardsUnderConcurrentUse: with buckets spread over shards, each of many
// clients taking tokens at once still gets exactly its burst, and the anonymous bucket stays one per API.
func TestClientsKeepTheirOwnBucketsAcrossShardsUnderConcurrentUse(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 1, Burst: 3}}, Anonymous: Rate{PerSecond: 1, Burst: 5}},
		func() time.Time { return now })
	const clients, tries = 200, 10
	allowed := make([]atomic.Int32, clients)
	var anon atomic.Int32
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range clients * tries {
				c := (i + w*31) % clients
				if ok, _ := l.Allow("patient-access", fmt.Sprintf("app-%d", c), "standard"); ok {
					allowed[c].Add(1)
				}
				if ok, _ := l.Allow("patient-access", "", ""); ok {
					anon.Add(1)
				}
			}
		})
	}
	wg.Wait()
	for c := range allowed {
		if got := allowed[c].Load(); got != 3 {
			t.Errorf("app-%d: %d allowed, want its burst of 3", c, got)
		}
	}
	if got := anon.Load(); got != 5 {
		t.Errorf("anonymous: %d allowed, want one bucket's burst of 5", got)
	}
}

// TestMaxClientsBoundsTheBucketsKeptOverAllShards: however many clients come, at most MaxClients buckets per
// API and tier are kept (each shard keeps its share).
func TestMaxClientsBoundsTheBucketsKeptOverAllShards(t *testing.T) {
	l := New(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 10}}, Anonymous: Rate{PerSecond: 1}, MaxClients: 64}, time.Now)
	for i := range 5000 {
		l.Allow("patient-access", fmt.Sprintf("app-%d", i), "standard")
	}
	kept := 0
	s := l.state.Load()
	for i := range s.shards {
		for _, c := range s.shards[i].clients {
			kept += c.Len()
		}
	}
	if kept > 64 || kept < 32 {
		t.Fatalf("%d buckets kept, want at most MaxClients (64) and most of it used", kept)
	}
}

// perUser is the limits of the per-user tests: a patient app's tier with a bucket per member and an
// aggregate for the app, and a backend tier without per-user buckets.
func perUser(now *time.Time) *Limiter {
	return New(Limits{
		Tiers:     map[string]Rate{"standard": {PerSecond: 2, Burst: 5}, "backend": {PerSecond: 1, Burst: 4}},
		PerUser:   map[string]Rate{"standard": {PerSecond: 1, Burst: 2}},
		Anonymous: Rate{PerSecond: 1, Burst: 1},
	}, func() time.Time { return *now })
}

func takeUser(l *Limiter, api, client, tier, user string, n int) (allowed int) {
	for range n {
		if ok, _ := l.AllowUser(api, client, tier, user); ok {
			allowed++
		}
	}
	return allowed
}

func TestOneMemberOverItsRateLeavesOtherMembersOfTheSameAppServed(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := perUser(&now)
	if got := takeUser(l, "patient-access", "app", "standard", "member-1", 10); got != 2 {
		t.Fatalf("member-1: %d of 10 allowed, want its own burst of 2", got)
	}
	ok, wait := l.AllowUser("patient-access", "app", "standard", "member-1")
	if ok || wait != time.Second {
		t.Fatalf("member-1 over its rate: ok=%v retry after %v, want refused for 1s", ok, wait)
	}
	// member-1's eight refusals took nothing from the app: its bucket of 5 still has 3.
	if got := takeUser(l, "patient-access", "app", "standard", "member-2", 2); got != 2 {
		t.Fatalf("member-2 of the same app: %d of 2 allowed", got)
	}
	if got := takeUser(l, "patient-access", "other-app", "standard", "member-1", 2); got != 2 {
		t.Fatalf("the same subject at another app has its own bucket: %d of 2 allowed", got)
	}
}

func TestTheAppsBucketCapsAllItsMembersTogether(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := perUser(&now)
	allowed := 0
	for i := range 10 {
		allowed += takeUser(l, "patient-access", "app", "standard", fmt.Sprintf("member-%d", i), 2)
	}
	if allowed != 5 {
		t.Fatalf("10 members, 2 requests each: %d allowed, want the app's burst of 5", allowed)
	}
	// Members refused because the app was over its rate got their tokens back: once the app refills, a
	// member refused earlier is served as if it had not asked.
	now = now.Add(time.Second)
	if got := takeUser(l, "patient-access", "app", "standard", "member-9", 1); got != 1 {
		t.Fatal("member-9, refused only by the app's bucket, is served once the app has a token again")
	}
}

func TestBackendClientsAndRequestsWithoutASubjectHaveTheClientsBucketOnly(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := perUser(&now)
	cases := []struct {
		name, client, tier, user string
		try, want                int
	}{
		{"backend: its subjects share the client's bucket", "org", "backend", "svc-1", 3, 3},
		{"backend: another subject, same bucket", "org", "backend", "svc-2", 3, 1},
		{"standard tier without a subject: the app's bucket", "app", "standard", "", 9, 5},
		{"unknown tier: the anonymous bucket, never a user's", "app-x", "gold", "member-1", 3, 1},
	}
	for _, c := range cases {
		if got := takeUser(l, "patient-access", c.client, c.tier, c.user, c.try); got != c.want {
			t.Errorf("%s: %d of %d allowed, want %d", c.name, got, c.try, c.want)
		}
	}
}

// TestMaxUsersBoundsTheUserBucketsKept: millions of subjects cannot grow the limiter without bound.
func TestMaxUsersBoundsTheUserBucketsKept(t *testing.T) {
	l := New(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 1 << 20}}, PerUser: map[string]Rate{"standard": {PerSecond: 10}},
		Anonymous: Rate{PerSecond: 1}, MaxUsers: 64}, time.Now)
	for i := range 5000 {
		l.AllowUser("patient-access", "app", "standard", fmt.Sprintf("member-%d", i))
	}
	kept := 0
	s := l.state.Load()
	for i := range s.shards {
		for _, c := range s.shards[i].users {
			kept += c.Len()
		}
	}
	if kept > 64 || kept < 32 {
		t.Fatalf("%d user buckets kept, want at most MaxUsers (64) and most of it used", kept)
	}
}

// TestMembersKeepTheirOwnBucketsUnderConcurrentUse: many members of one app taking tokens at once each get
// their burst, and the app's bucket is taken exactly once per request served.
func TestMembersKeepTheirOwnBucketsUnderConcurrentUse(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 2, Burst: 700}}, PerUser: map[string]Rate{"standard": {PerSecond: 1, Burst: 3}},
		Anonymous: Rate{PerSecond: 1}}, func() time.Time { return now })
	const members, tries = 200, 10
	allowed := make([]atomic.Int32, members)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range members * tries {
				m := (i + w*31) % members
				if ok, _ := l.AllowUser("patient-access", "app", "standard", fmt.Sprintf("member-%d", m)); ok {
					allowed[m].Add(1)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for m := range allowed {
		got := int(allowed[m].Load())
		total += got
		if got != 3 {
			t.Errorf("member-%d: %d allowed, want its burst of 3", m, got)
		}
	}
	left := 0
	for m := range 100 {
		left += takeUser(l, "patient-access", "app", "standard", fmt.Sprintf("new-member-%d", m), 3)
	}
	if left != 700-total {
		t.Errorf("after %d served, new members got %d more, want the app's remaining %d", total, left, 700-total)
	}
}

func TestAnAPIOverridingTheTierBelowThePerUserRateHasNoUserBuckets(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(Limits{
		Tiers:     map[string]Rate{"standard": {PerSecond: 10, Burst: 10}},
		PerUser:   map[string]Rate{"standard": {PerSecond: 2, Burst: 2}},
		PerAPI:    map[string]map[string]Rate{"provider-access": {"standard": {PerSecond: 2, Burst: 4}}},
		Anonymous: Rate{PerSecond: 1},
	}, func() time.Time { return now })
	if got := takeUser(l, "provider-access", "app", "standard", "dr-smith", 9); got != 4 {
		t.Fatalf("provider-access: %d allowed, want the client's override burst of 4 and no user bucket of 2", got)
	}
	if got := takeUser(l, "patient-access", "app", "standard", "member-1", 9); got != 2 {
		t.Fatalf("patient-access: %d allowed, want the member's burst of 2", got)
	}
}

// BenchmarkAllowUserParallel is BenchmarkAllowParallel for members of one patient app: two buckets a
// request (the member's, then the app's), the app's shared by every goroutine.
//
//	go test -run '^$' -bench AllowUserParallel -cpu 1,2,4 ./internal/ratelimit
func BenchmarkAllowUserParallel(b *testing.B) {
	l := New(Limits{Tiers: map[string]Rate{"standard": {PerSecond: 1 << 30}}, PerUser: map[string]Rate{"standard": {PerSecond: 1 << 29}},
		Anonymous: Rate{PerSecond: 1 << 30}}, time.Now)
	members := make([]string, 4096)
	for i := range members {
		members[i] = fmt.Sprintf("member-%d", i)
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			i++
			if ok, _ := l.AllowUser("patient-access", "patient-app", "standard", members[i%len(members)]); !ok {
				b.Fatal("refused under an unlimited rate")
			}
		}
	})
}
