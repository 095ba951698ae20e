package subscriptions

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// storeContract is what every Store must do; memory_test runs it on the MemoryStore, postgres_e2e_test on
// PostgreSQL.
func storeContract(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	sub := func(id, status string, filter ...string) Subscription {
		return Subscription{ID: id, ClientID: "provider-org-a", Filter: filter, Endpoint: "http://127.0.0.1:1/hook",
			Headers: []string{"Authorization: Bearer x"}, Content: ContentIDOnly, Timeout: DefaultTimeout, Status: status,
			Resource: []byte(`{"resourceType":"Subscription"}`), Created: t0, NextAttempt: t0}
	}
	build := func(s Subscription, n int64) ([]byte, error) { return []byte(s.ID + "#" + string(rune('0'+n))), nil }

	t.Run("CreatedSubscriptionReadsBackWhole", func(t *testing.T) {
		st := open(t)
		want := sub("s1", StatusRequested, "sys|1")
		want.HeartbeatPeriod = time.Minute
		if err := st.Create(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, "s1")
		if err != nil || got.ClientID != want.ClientID || got.Endpoint != want.Endpoint || got.Headers[0] != want.Headers[0] ||
			got.Filter[0] != "sys|1" || got.HeartbeatPeriod != time.Minute || got.Status != StatusRequested ||
			!bytes.Equal(got.Resource, want.Resource) || !got.Created.Equal(t0) || got.Content != ContentIDOnly {
			t.Fatalf("got %+v %v", got, err)
		}
		if _, err := st.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing: %v", err)
		}
		if n, err := st.Live(ctx, "provider-org-a"); err != nil || n != 1 {
			t.Fatalf("live %d %v, want 1", n, err)
		}
		if err := st.SetOff(ctx, "s1"); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.Get(ctx, "s1"); got.Status != StatusOff {
			t.Fatalf("status %s after SetOff", got.Status)
		}
		if n, _ := st.Live(ctx, "provider-org-a"); n != 0 {
			t.Fatalf("live %d after SetOff, want 0", n)
		}
		if err := st.SetOff(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("SetOff missing: %v", err)
		}
	})

	t.Run("EnqueueNumbersEventsPerSubscriptionOnceEachAndOnlyForLiveMatchingOnes", func(t *testing.T) {
		st := open(t)
		for _, s := range []Subscription{sub("a", StatusActive, "sys|1"), sub("b", StatusRequested, "sys|1", "sys|2"),
			sub("c", StatusOff, "sys|1"), sub("d", StatusActive, "sys|3")} {
			if err := st.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		for i, tc := range []struct {
			req  string
			ver  int
			ids  []string
			want int
		}{{"r1", 1, []string{"sys|1"}, 2}, {"r1", 1, []string{"sys|1"}, 0}, {"r1", 2, []string{"sys|2", "x|y"}, 1}, {"r2", 1, []string{"other|1"}, 0}} {
			n, err := st.Enqueue(ctx, tc.req, tc.ver, tc.ids, []string{"member-01"}, build)
			if err != nil || n != tc.want {
				t.Fatalf("enqueue %d: %d %v, want %d", i, n, err, tc.want)
			}
		}
		for id, want := range map[string][]string{"a": {"a#1"}, "b": {"b#1", "b#2"}, "c": nil, "d": nil} {
			notes, err := st.Notifications(ctx, id)
			if err != nil || len(notes) != len(want) {
				t.Fatalf("%s: %d notes %v, want %v", id, len(notes), err, want)
			}
			for i, n := range notes {
				if string(n.Body) != want[i] || n.EventNumber != int64(i+1) || n.State != NotePending || n.Patients[0] != "member-01" {
					t.Errorf("%s[%d]: %+v", id, i, n)
				}
			}
		}
		if s, _ := st.Get(ctx, "b"); s.Events != 2 {
			t.Errorf("b counts %d events, want 2", s.Events)
		}
	})

	t.Run("AFailingBuildEnqueuesNothing", func(t *testing.T) {
		st := open(t)
		_ = st.Create(ctx, sub("a", StatusActive, "sys|1"))
		_ = st.Create(ctx, sub("b", StatusActive, "sys|1"))
		failB := func(s Subscription, n int64) ([]byte, error) {
			if s.ID == "b" {
				return nil, errors.New("boom")
			}
			return build(s, n)
		}
		if _, err := st.Enqueue(ctx, "r", 1, []string{"sys|1"}, nil, failB); err == nil {
			t.Fatal("a failed build was not reported")
		}
		if notes, _ := st.Notifications(ctx, "a"); len(notes) != 0 {
			t.Fatalf("a kept %d notifications of a failed enqueue", len(notes))
		}
		if s, _ := st.Get(ctx, "a"); s.Events != 0 {
			t.Fatalf("a counts %d events after a failed enqueue", s.Events)
		}
	})

	t.Run("AClaimedHandshakeIsNobodyElsesUntilItsLeaseEnds", func(t *testing.T) {
		st := open(t)
		_ = st.Create(ctx, sub("s", StatusRequested, "sys|1"))
		got, err := st.ClaimSubscriptions(ctx, t0, time.Minute, 10)
		if err != nil || len(got) != 1 || got[0].Attempts != 1 {
			t.Fatalf("first claim: %+v %v", got, err)
		}
		if again, _ := st.ClaimSubscriptions(ctx, t0.Add(30*time.Second), time.Minute, 10); len(again) != 0 {
			t.Fatalf("claimed twice within the lease: %+v", again)
		}
		retaken, _ := st.ClaimSubscriptions(ctx, t0.Add(2*time.Minute), time.Minute, 10)
		if len(retaken) != 1 || retaken[0].Attempts != 2 {
			t.Fatalf("an expired lease was not taken over: %+v", retaken)
		}
		if err := st.FinishSubscription(ctx, "s", got[0].Lease, Result{Delivered: true, At: t0}); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("the first holder wrote over the second: %v", err)
		}
		if err := st.FinishSubscription(ctx, "s", retaken[0].Lease, Result{Delivered: true, At: t0.Add(2 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		s, _ := st.Get(ctx, "s")
		if s.Status != StatusActive || s.Attempts != 0 || !s.LastSent.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("after an accepted handshake: %+v", s)
		}
		if more, _ := st.ClaimSubscriptions(ctx, t0.Add(time.Hour), time.Minute, 10); len(more) != 0 {
			t.Fatalf("an active subscription without heartbeat was claimed: %+v", more)
		}
	})

	t.Run("HandshakeRetriesWhenDueAndGivesUpIntoError", func(t *testing.T) {
		st := open(t)
		_ = st.Create(ctx, sub("s", StatusRequested, "sys|1"))
		c, _ := st.ClaimSubscriptions(ctx, t0, time.Minute, 10)
		_ = st.FinishSubscription(ctx, "s", c[0].Lease, Result{At: t0, Next: t0.Add(10 * time.Second)})
		if early, _ := st.ClaimSubscriptions(ctx, t0.Add(5*time.Second), time.Minute, 10); len(early) != 0 {
			t.Fatal("claimed before its next attempt")
		}
		c, _ = st.ClaimSubscriptions(ctx, t0.Add(10*time.Second), time.Minute, 10)
		if len(c) != 1 {
			t.Fatal("not claimed when due")
		}
		if err := st.FinishSubscription(ctx, "s", c[0].Lease, Result{GiveUp: true, At: t0}); err != nil {
			t.Fatal(err)
		}
		if s, _ := st.Get(ctx, "s"); s.Status != StatusError {
			t.Fatalf("status %s after giving up", s.Status)
		}
	})

	t.Run("HeartbeatIsOwedOnlyWhenNothingWasSentWithinThePeriod", func(t *testing.T) {
		st := open(t)
		s := sub("s", StatusActive, "sys|1")
		s.HeartbeatPeriod = time.Minute
		_ = st.Create(ctx, s)
		if c, _ := st.ClaimSubscriptions(ctx, t0.Add(59*time.Second), time.Second, 10); len(c) != 0 {
			t.Fatal("heartbeat before its period")
		}
		c, _ := st.ClaimSubscriptions(ctx, t0.Add(time.Minute), time.Second, 10)
		if len(c) != 1 {
			t.Fatal("no heartbeat after its period")
		}
		_ = st.FinishSubscription(ctx, "s", c[0].Lease, Result{Delivered: true, At: t0.Add(time.Minute)})
		if c, _ := st.ClaimSubscriptions(ctx, t0.Add(90*time.Second), time.Second, 10); len(c) != 0 {
			t.Fatal("heartbeat again within the period")
		}
	})

	t.Run("NotificationsGoOutInEventOrderOnlyForActiveSubscriptions", func(t *testing.T) {
		st := open(t)
		_ = st.Create(ctx, sub("a", StatusRequested, "sys|1"))
		_, _ = st.Enqueue(ctx, "r1", 1, []string{"sys|1"}, nil, build)
		_, _ = st.Enqueue(ctx, "r2", 1, []string{"sys|1"}, nil, build)
		if c, _ := st.ClaimNotifications(ctx, t0, time.Minute, 10); len(c) != 0 {
			t.Fatal("a notification was claimed before the handshake was accepted")
		}
		hs, _ := st.ClaimSubscriptions(ctx, t0, time.Minute, 10)
		_ = st.FinishSubscription(ctx, "a", hs[0].Lease, Result{Delivered: true, At: t0})
		c, err := st.ClaimNotifications(ctx, t0, time.Minute, 10)
		if err != nil || len(c) != 1 || c[0].EventNumber != 1 || string(c[0].Body) != "a#1" || c[0].Sub.Endpoint == "" || c[0].Attempts != 1 {
			t.Fatalf("first claim: %+v %v", c, err)
		}
		if more, _ := st.ClaimNotifications(ctx, t0, time.Minute, 10); len(more) != 0 {
			t.Fatalf("event 2 claimed while event 1 is pending: %+v", more)
		}
		_ = st.FinishNotification(ctx, "a", 1, c[0].Lease, Result{At: t0, Next: t0.Add(time.Second)})
		if more, _ := st.ClaimNotifications(ctx, t0.Add(500*time.Millisecond), time.Minute, 10); len(more) != 0 {
			t.Fatalf("claimed before due, or event 2 overtook event 1: %+v", more)
		}
		c2, _ := st.ClaimNotifications(ctx, t0.Add(time.Second), time.Minute, 10)
		if len(c2) != 1 || c2[0].EventNumber != 1 || c2[0].Attempts != 2 || string(c2[0].Body) != "a#1" {
			t.Fatalf("retry: %+v", c2)
		}
		if err := st.FinishNotification(ctx, "a", 1, c[0].Lease, Result{Delivered: true, At: t0}); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("a stale lease finished the notification: %v", err)
		}
		_ = st.FinishNotification(ctx, "a", 1, c2[0].Lease, Result{Delivered: true, At: t0.Add(time.Second)})
		c3, _ := st.ClaimNotifications(ctx, t0.Add(time.Second), time.Minute, 10)
		if len(c3) != 1 || c3[0].EventNumber != 2 {
			t.Fatalf("event 2 after event 1: %+v", c3)
		}
		_ = st.FinishNotification(ctx, "a", 2, c3[0].Lease, Result{GiveUp: true, At: t0})
		notes, _ := st.Notifications(ctx, "a")
		if notes[0].State != NoteDelivered || notes[1].State != NoteFailed {
			t.Fatalf("states %s %s", notes[0].State, notes[1].State)
		}
		if s, _ := st.Get(ctx, "a"); s.Status != StatusError || !s.LastSent.Equal(t0.Add(time.Second)) {
			t.Fatalf("subscription after a notification gave up: %+v", s)
		}
	})
}
