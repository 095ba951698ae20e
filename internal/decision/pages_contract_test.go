package decision_test

import (
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/decision/pagestest"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestInMemoryPagesKeepsThePageStoreContract holds InMemoryPages to the table the PostgreSQL store
// (adapters/jobstore) is held to.
func TestInMemoryPagesKeepsThePageStoreContract(t *testing.T) {
	pagestest.Run(t, func(t *testing.T) pagestest.Store {
		clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
		return pagestest.Store{PageStore: &decision.InMemoryPages{Now: clock.Now}, Wait: clock.Advance}
	})
}
