package ratelimit

import (
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
