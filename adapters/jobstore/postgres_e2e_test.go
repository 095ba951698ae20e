//go:build e2e

package jobstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/pgtest"
)

// testSchema is a schema of the test's own on the stack's PostgreSQL (bash test/stack/postgres.sh start;
// FHIRWALL_TEST_POSTGRES_DSN overrides the DSN), dropped when the test ends.
func testSchema(t testing.TB) string { return pgtest.Schema(t, "jobstore") }

// open is one replica's store on dsn.
func open(t testing.TB, dsn string) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Open(ctx, dsn)
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// unique names a job or file of its own.
func unique(t *testing.T, kind decision.ExportKind) decision.ExportRef {
	return decision.ExportRef{Kind: kind, ID: fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())}
}

func TestE2EJobIsBoundToItsFirstOwnerAcrossReplicas(t *testing.T) {
	evidence.Proves(t, "OPS-REPLICA-01", "CMS-PROV-05")
	ctx := context.Background()
	dsn := testSchema(t)
	replicaA, replicaB := open(t, dsn), open(t, dsn)
	job := unique(t, decision.ExportJob)
	if err := replicaA.Bind(ctx, job, "provider-org-a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if owner, ok, err := replicaB.Owner(ctx, job); err != nil || !ok || owner != "provider-org-a" {
		t.Fatalf("the other replica sees owner %q, %v, %v", owner, ok, err)
	}
	if err := replicaB.Bind(ctx, job, "provider-org-b", time.Hour); !errors.Is(err, decision.ErrExportBound) {
		t.Errorf("another client taking the job: %v, want ErrExportBound", err)
	}
	if err := replicaB.Bind(ctx, job, "provider-org-a", time.Hour); err != nil {
		t.Errorf("the owner binding again (a file listed twice): %v", err)
	}
	file := decision.ExportRef{Kind: decision.ExportFile, ID: job.ID}
	if _, ok, _ := replicaA.Owner(ctx, file); ok {
		t.Error("a file with a job's id is bound")
	}
	if _, ok, err := replicaA.Owner(ctx, unique(t, decision.ExportJob)); ok || err != nil {
		t.Errorf("an unknown job: %v %v", ok, err)
	}
}

func TestE2EExpiredBindingIsGoneAndCanBeRebound(t *testing.T) {
	ctx := context.Background()
	p := open(t, testSchema(t))
	file := unique(t, decision.ExportFile)
	if err := p.Bind(ctx, file, "provider-org-a", time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	if _, ok, err := p.Owner(ctx, file); ok || err != nil {
		t.Fatalf("expired binding still answers: %v %v", ok, err)
	}
	if err := p.Bind(ctx, file, "provider-org-b", time.Hour); err != nil {
		t.Fatalf("rebinding an expired id: %v", err)
	}
	if n, err := p.Purge(ctx); err != nil || n < 0 {
		t.Errorf("purge: %d %v", n, err)
	}
}

func TestE2EConcurrentBindsHaveOneWinner(t *testing.T) {
	ctx := context.Background()
	dsn := testSchema(t)
	stores := []*Postgres{open(t, dsn), open(t, dsn)}
	job := unique(t, decision.ExportJob)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = stores[i%2].Bind(ctx, job, fmt.Sprintf("client-%d", i), time.Hour)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, decision.ErrExportBound):
			t.Errorf("bind: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d clients own the job, want exactly 1", won)
	}
}
