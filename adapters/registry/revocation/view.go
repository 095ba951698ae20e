package revocation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/adapters/pgwatch"
	"github.com/fhirwall/fhirwall/internal/token"
)

// Timing of the view, as the app registry's (adapters/registry/postgres), both kept by adapters/pgwatch: a
// revocation reaches every replica's view when its notification arrives (milliseconds); the periodic reload
// only repairs what a notification could have missed.
const (
	// DefaultStaleAfter: a view not confirmed fresh for this long fails every check (the gateway answers
	// 503) rather than accept a token that may have been revoked meanwhile.
	DefaultStaleAfter = 10 * time.Second
	// keepExpired: a token is accepted until exp plus the verifier's clock skew, at most token.MaxClockSkew,
	// so its revocation is kept that much longer.
	keepExpired = token.MaxClockSkew
)

// Errors of the view.
var (
	// ErrRevoked: the token, or its subject's grant to the client, was revoked.
	ErrRevoked = errors.New("token revoked")
	// ErrStale: the view could not be refreshed for longer than its bound.
	ErrStale = errors.New("revocation view is stale: PostgreSQL unreachable")
)

// View is one replica's snapshot of the revocations, rebuilt whole and swapped atomically; Check never
// touches the database.
type View struct {
	pool       *pgxpool.Pool
	dsn        string
	log        *slog.Logger
	now        func() time.Time
	staleAfter time.Duration

	snap  atomic.Pointer[snapshot]
	fresh pgwatch.Fresh
	// reloaded counts reloads, for tests that wait for one.
	reloaded atomic.Uint64
}

type grantKey struct{ subject, clientID string }

type snapshot struct {
	tokens map[string]struct{}    // jti (or TokenKey) → revoked
	grants map[grantKey]time.Time // revoked at
}

func newView(pool *pgxpool.Pool, dsn string, log *slog.Logger) *View {
	v := &View{pool: pool, dsn: dsn, log: log, now: time.Now, staleAfter: DefaultStaleAfter}
	v.snap.Store(&snapshot{tokens: map[string]struct{}{}, grants: map[grantKey]time.Time{}})
	return v
}

// TokenKey is what a token without a jti is revoked by: the SHA-256 of its bytes, so neither the view nor
// the table holds a usable token.
func TokenKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Check says whether the token whose verified identity is id (and whose bytes are raw) may still be used:
// nil, ErrRevoked, or ErrStale when the view is too old to tell.
func (v *View) Check(ctx context.Context, id token.Identity, raw string) error {
	if err := v.Ready(ctx); err != nil {
		return err
	}
	s := v.snap.Load()
	key := id.JTI
	if key == "" {
		key = TokenKey(raw)
	}
	if _, ok := s.tokens[key]; ok {
		return fmt.Errorf("%w: token", ErrRevoked)
	}
	if at, ok := s.grants[grantKey{id.Subject, id.ClientID}]; ok {
		signedIn := id.AuthTime
		if signedIn.IsZero() {
			signedIn = id.IssuedAt
		}
		// A token that cannot show it was signed in after the revocation is refused with the grant. iat and
		// auth_time have whole seconds, so a token of the revocation's own second is refused too.
		if signedIn.IsZero() || !signedIn.After(at) {
			return fmt.Errorf("%w: grant", ErrRevoked)
		}
	}
	return nil
}

// Ready reports ErrStale while the view is older than its bound: every authenticated request is refused
// then (503), so /readyz takes the replica out of rotation until PostgreSQL answers again.
func (v *View) Ready(context.Context) error {
	return v.fresh.Check(v.now(), v.staleAfter, ErrStale)
}

// Len is the number of revoked tokens and grants in the view.
func (v *View) Len() (tokens, grants int) {
	s := v.snap.Load()
	return len(s.tokens), len(s.grants)
}

// Reload rebuilds the view from the tables. On error the view is left as it was (and ages).
func (v *View) Reload(ctx context.Context) error {
	started := v.now()
	s := &snapshot{tokens: map[string]struct{}{}, grants: map[grantKey]time.Time{}}
	err := pgx.BeginTxFunc(ctx, v.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT jti FROM fhirwall_revoked_tokens WHERE expires_at > $1`, started.Add(-keepExpired))
		if err != nil {
			return err
		}
		var jti string
		if _, err := pgx.ForEachRow(rows, []any{&jti}, func() error { s.tokens[jti] = struct{}{}; return nil }); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT subject, client_id, revoked_at FROM fhirwall_revoked_grants`)
		if err != nil {
			return err
		}
		var k grantKey
		var at time.Time
		_, err = pgx.ForEachRow(rows, []any{&k.subject, &k.clientID, &at}, func() error { s.grants[k] = at; return nil })
		return err
	})
	if err != nil {
		return fmt.Errorf("revocation: reload: %w", err)
	}
	v.snap.Store(s)
	v.fresh.Mark(started) // fresh as of the query's start: a revocation committed later is notified later
	v.reloaded.Add(1)
	return nil
}

// prune deletes the rows of tokens that can no longer be accepted anyway. Any replica may do it.
func (v *View) prune(ctx context.Context) error {
	_, err := v.pool.Exec(ctx, `DELETE FROM fhirwall_revoked_tokens WHERE expires_at <= $1`, v.now().Add(-keepExpired))
	return err
}

// Watch keeps the view fresh until ctx ends: a dedicated connection LISTENs on Channel, every notification
// reloads the view, and it is reloaded (and expired rows pruned) every 30 s anyway. A lost connection is
// re-established with a full reload; while it is down the view ages and, past the bound, every check fails.
// Watch returns ctx's error.
func (v *View) Watch(ctx context.Context) error {
	w := &pgwatch.Watch{
		DSN: v.dsn, Channel: Channel, Name: "revocation view", Log: v.log,
		Now:    func() time.Time { return v.now() },
		Fresh:  &v.fresh,
		Reload: v.Reload,
		BeforePeriodic: func(ctx context.Context) {
			if err := v.prune(ctx); err != nil {
				v.log.Warn("revocation view: pruning expired tokens failed", "error", err)
			}
		},
	}
	return w.Run(ctx)
}
