package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// callsSchema counts calls per key and clock minute for limits every replica shares (Dynamic Client
// Registration per client address: dcr.Counter). One row per key: the current window and its count.
const callsSchema = `
CREATE TABLE IF NOT EXISTS fhirwall_call_counts (
	key          text        PRIMARY KEY,
	window_start timestamptz NOT NULL,
	calls        integer     NOT NULL
);
`

// pruneEvery is how many counted calls a process makes between removals of windows an hour old, so the table
// holds about the keys of the last hour.
const pruneEvery = 256

var callsCounted atomic.Uint64

// CountCall implements dcr.Counter: it adds one call of key to the window that starts at window (a new
// window starts the count again) and returns the window's calls, this one included, in one statement, so
// concurrent replicas never lose a count. A replica whose clock is behind counts into the newer window it
// finds, never restarting it.
func (s *Store) CountCall(ctx context.Context, key string, window time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `INSERT INTO fhirwall_call_counts AS c (key, window_start, calls) VALUES ($1, $2, 1)
ON CONFLICT (key) DO UPDATE SET
	calls = CASE WHEN EXCLUDED.window_start <= c.window_start THEN c.calls + 1 ELSE 1 END,
	window_start = GREATEST(c.window_start, EXCLUDED.window_start)
RETURNING calls`, key, window.UTC()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("registry: count call: %w", err)
	}
	if callsCounted.Add(1)%pruneEvery == 0 {
		if _, err := s.pool.Exec(ctx, `DELETE FROM fhirwall_call_counts WHERE window_start < $1`, window.Add(-time.Hour)); err != nil {
			s.log.Warn("registry: pruning old call counts failed", "err", err)
		}
	}
	return n, nil
}
