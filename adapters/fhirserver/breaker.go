package fhirserver

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Every breaker in front of the FHIR server follows one policy: five failures in a row open it for ten
// seconds. A failure is the server's: an error answer, a broken connection, or a wait longer than fhirwall's
// own timeout. A caller that stops waiting (its client hung up, its deadline passed) says nothing about the
// server and is not counted at all (ARCHITECTURE Invariant 6): counting it as a failure let five impatient
// clients open the breaker for everybody, and counting it as a success (gobreaker's IsSuccessful) would
// reset a real run of failures, so it is excluded (IsExcluded).
const (
	breakerTrips = 5
	breakerOpen  = 10 * time.Second
)

func newBreaker[T any](name string) *gobreaker.CircuitBreaker[T] {
	return gobreaker.NewCircuitBreaker[T](gobreaker.Settings{
		Name:    name,
		Timeout: breakerOpen, // open → half-open after this long
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= breakerTrips
		},
		IsExcluded: func(err error) bool {
			var gone *callerGone
			return errors.As(err, &gone)
		},
	})
}

// callerGone wraps the error of a call whose caller's context ended before the server answered.
type callerGone struct{ err error }

func (e *callerGone) Error() string { return e.err.Error() }
func (e *callerGone) Unwrap() error { return e.err }

// errBudget is the cause of a context made by WithBudget.
var errBudget = errors.New("fhir server: lookup budget spent")

// WithBudget bounds a lookup fhirwall runs on its own behalf, detached from any one caller (a shared
// attribution fetch, say). Its expiry is the server being too slow, and counts against it like a
// transport timeout; any other end of a caller's context does not.
func WithBudget(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, errBudget)
}

// call runs fn through the breaker b on behalf of ctx's caller.
func call[T any](ctx context.Context, b *gobreaker.CircuitBreaker[T], fn func() (T, error)) (T, error) {
	return b.Execute(func() (T, error) {
		v, err := fn()
		if err != nil && ctx.Err() != nil && !errors.Is(context.Cause(ctx), errBudget) {
			return v, &callerGone{err}
		}
		return v, err
	})
}
