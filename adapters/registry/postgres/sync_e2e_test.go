//go:build e2e

package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

func syncApp(id string) apps.App {
	return apps.App{ClientID: id, Name: id, ApprovedAPIs: []string{"patient-access"}, ApprovedScopes: []string{"patient/*.rs"},
		Environment: apps.Sandbox, State: apps.StateActive}
}

// TestEveryChangeMarksItsAppDirtyAndOnlyACommittedOne: create, update and transition each leave the app
// pending for the identity provider; a change whose audit fails leaves no trace in the outbox either.
func TestEveryChangeMarksItsAppDirtyAndOnlyACommittedOne(t *testing.T) {
	ctx := context.Background()
	au := &auditorFake{}
	s := openReplica(t, cleanSchema(t), au)
	if _, err := s.Sync(ctx, "nobody"); !errors.Is(err, apps.ErrNotFound) {
		t.Errorf("Sync of an unknown app: %v, want ErrNotFound", err)
	}
	au.setFailing(true)
	if _, err := s.Create(ctx, syncApp("unaudited"), "admin:t", ""); err == nil {
		t.Fatal("an unaudited create committed")
	}
	au.setFailing(false)
	if _, err := s.Sync(ctx, "unaudited"); !errors.Is(err, apps.ErrNotFound) {
		t.Errorf("a rolled-back create left an outbox row: %v", err)
	}

	a, err := s.Create(ctx, syncApp("a"), "admin:t", "")
	if err != nil {
		t.Fatal(err)
	}
	jobs, _ := s.DueSyncs(ctx, 10)
	if len(jobs) != 1 || jobs[0].ClientID != "a" {
		t.Fatalf("due after create: %+v", jobs)
	}
	// A change made while the sync works on the first keeps the app dirty after that sync is done.
	a.Name = "renamed"
	if _, err := s.Update(ctx, a, "admin:t", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncDone(ctx, jobs[0]); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Sync(ctx, "a"); !st.Pending || st.SyncedAt.IsZero() {
		t.Errorf("a change after the sync read the app was lost: %+v", st)
	}
	jobs, _ = s.DueSyncs(ctx, 10)
	if err := s.SyncFailed(ctx, "a", "keycloak: unreachable", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Sync(ctx, "a"); !st.Pending || st.Attempts != 1 || st.LastError != "keycloak: unreachable" {
		t.Errorf("after a failure: %+v", st)
	}
	if due, _ := s.DueSyncs(ctx, 10); len(due) != 0 {
		t.Errorf("due before its retry time: %+v", due)
	}
	if _, err := s.Transition(ctx, "a", apps.StateSuspended, "admin:t", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	due, _ := s.DueSyncs(ctx, 10)
	if len(due) != 1 {
		t.Fatalf("a new change did not cancel the backoff: %+v", due)
	}
	if err := s.SyncDone(ctx, due[0]); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Sync(ctx, "a"); st.Pending || st.Attempts != 0 || st.LastError != "" {
		t.Errorf("after delivery: %+v", st)
	}
	if n, _ := s.PendingSyncs(ctx); n != 0 {
		t.Errorf("pending %d", n)
	}
}

func TestRegisterKeepsTheSecretUntilDeliveredAndOnlyTheTokensHash(t *testing.T) {
	ctx := context.Background()
	s := openReplica(t, cleanSchema(t), &auditorFake{})
	if _, err := s.Register(ctx, syncApp("r"), "dcr", "", apps.Issued{ClientSecret: "s3cret", RegistrationToken: "rat"}); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := s.pool.QueryRow(ctx, `SELECT registration_token_sha256 FROM fhirwall_app_credentials WHERE client_id = 'r'`).Scan(&stored); err != nil || len(stored) != 32 {
		t.Fatalf("stored token: %x, %v", stored, err)
	}
	for tok, want := range map[string]error{"rat": nil, "other": apps.ErrUnauthorized, "": apps.ErrUnauthorized} {
		if err := s.VerifyRegistrationToken(ctx, "r", tok); !errors.Is(err, want) {
			t.Errorf("token %q: %v, want %v", tok, err, want)
		}
	}
	if err := s.VerifyRegistrationToken(ctx, "unknown", "rat"); !errors.Is(err, apps.ErrUnauthorized) {
		t.Errorf("unknown client: %v", err)
	}
	if sec, _ := s.PendingSecret(ctx, "r"); sec != "s3cret" {
		t.Errorf("pending secret %q", sec)
	}
	jobs, _ := s.DueSyncs(ctx, 10)
	if err := s.SyncDone(ctx, jobs[0]); err != nil {
		t.Fatal(err)
	}
	if sec, _ := s.PendingSecret(ctx, "r"); sec != "" {
		t.Error("the secret is kept after delivery")
	}
	if _, err := s.Register(ctx, syncApp("r"), "dcr", "", apps.Issued{ClientSecret: "again"}); !errors.Is(err, apps.ErrExists) {
		t.Errorf("registering a taken id: %v", err)
	}
}

func TestOnlyOneReplicaLeadsTheSync(t *testing.T) {
	ctx := context.Background()
	dsn := cleanSchema(t)
	s := openReplica(t, dsn, &auditorFake{})
	l, err := s.Lead(ctx, "realm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lead(ctx, "realm"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("second leader: %v", err)
	}
	// The channel is the database's, shared by every schema: other tests' notifications may arrive too.
	idle := false
	for range 20 {
		id, err := l.Wait(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("Wait: %v; want the connection (and the lock) alive", err)
		}
		if idle = id == ""; idle {
			break
		}
	}
	if !idle {
		t.Fatal("Wait never timed out idle")
	}
	mine := "n-" + strings.ToLower(rand.Text()[:8])
	if _, err := s.Create(ctx, syncApp(mine), "admin:t", ""); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); ; {
		id, err := l.Wait(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if id == mine {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the change's notification never arrived")
		}
	}
	l.Release()
	l2, err := s.Lead(ctx, "realm")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Release()
}
