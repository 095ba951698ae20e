//go:build e2e

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirwall/fhirwall/adapters/priorauth"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
)

// The report read from PostgreSQL (bash test/stack/postgres.sh start; FHIRWALL_TEST_POSTGRES_DSN overrides
// the DSN) and the shipped rules file. The requests sit in a far year of their own, deleted afterwards.
func TestE2EReportPriorAuthReadsTheYearFromPostgres(t *testing.T) {
	evidence.Proves(t, "CMS-PAU-05")
	dsn := os.Getenv("FHIRWALL_TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := priorauth.OpenPostgres(ctx, dsn)
	if err != nil {
		require.Missing(t, "PostgreSQL at "+dsn+": "+err.Error()+"; start it with `bash test/stack/postgres.sh start`")
	}
	defer store.Close()
	year := 2200 + int(time.Now().UnixNano()%700)
	prefix := fmt.Sprintf("cli-report-%d-", time.Now().UnixNano())
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, err = conn.Exec(context.Background(), `DELETE FROM fhirwall_prior_auth_requests WHERE starts_with(id, $1)`, prefix)
			conn.Close(context.Background())
		}
		if err != nil {
			t.Errorf("removing the test's rows: %v", err)
		}
	})
	start := time.Date(year, 2, 1, 0, 0, 0, 0, time.UTC)
	for i, r := range []struct {
		status    priorauth.Status
		expedited bool
		took      time.Duration
	}{{priorauth.StatusApproved, false, 24 * time.Hour}, {priorauth.StatusDenied, false, 48 * time.Hour},
		{priorauth.StatusApproved, true, time.Hour}, {priorauth.StatusPended, false, 0}} {
		req := priorauth.Request{ID: fmt.Sprintf("%s%d", prefix, i), Provider: "Organization/org-a", ClaimIdentifier: "c|" + prefix,
			Received: start, Deadline: start.Add(72 * time.Hour), Expedited: r.expedited, Status: r.status, Version: 1}
		if r.took > 0 {
			req.DecidedAt = start.Add(r.took)
		}
		if err := store.Insert(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	code, out, err := cli(t, "report", "prior-auth", "-year", fmt.Sprint(year), "-postgres", dsn,
		"-rules", "../../config/prior-auth-rules.yaml", "-format", "json")
	if code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	var rep priorauth.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Standard.Requests != 3 || rep.Standard.Approved != (priorauth.Rate{Count: 1, Of: 2, Percent: 50}) ||
		rep.Standard.PendedAtYearEnd != 1 || rep.Expedited.TimeToDecision.MedianSeconds != 3600 {
		t.Fatalf("report %+v", rep)
	}
	var codes []string
	for _, it := range rep.ItemsRequiringPriorAuth {
		codes = append(codes, it.Code)
	}
	if list := strings.Join(codes, " "); !strings.Contains(list, "33510") || strings.Contains(list, "J1745") {
		t.Fatalf("the list from the rules file: %s; want CABG and no drug", list)
	}
	code, out, err = cli(t, "report", "prior-auth", "-year", fmt.Sprint(year), "-postgres", dsn, "-rules", "../../config/prior-auth-rules.yaml")
	if code != 0 || err != nil || !strings.Contains(out, "| Approved (partial approvals included) | 50.00% (1 of 2) | 100.00% (1 of 1) |") {
		t.Fatalf("markdown: exit %d, %v:\n%s", code, err, out)
	}
}
