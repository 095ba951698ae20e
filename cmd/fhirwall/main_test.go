package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// spoolWithRecords makes a key with the CLI and a closed spool signed by it, holding records of two patients.
func spoolWithRecords(t *testing.T) (dir, key string) {
	t.Helper()
	tmp := t.TempDir()
	key = filepath.Join(tmp, "signing.key")
	if code, err := run(context.Background(), []string{"audit", "keygen", "-out", key}, &bytes.Buffer{}); code != 0 || err != nil {
		t.Fatalf("keygen: %d %v", code, err)
	}
	priv, err := audit.LoadSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(tmp, "spool")
	sp, err := audit.Open(dir, audit.Options{Key: priv})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"member-01", "member-02", "member-01"} {
		r := audit.Record{ID: audit.NewID(), Time: time.Date(2027, 3, 1+i, 0, 0, 0, 0, time.UTC), API: "patient-access",
			Allow: true, Status: 200, ClientID: "patient-app", Patients: []string{p}, DataCategories: []string{"claims"},
			Method: "GET", Path: "/ExplanationOfBenefit", Interaction: "search-type", ResourceType: "ExplanationOfBenefit"}
		if err := sp.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, key
}

func cli(t *testing.T, args ...string) (int, string, error) {
	t.Helper()
	var out bytes.Buffer
	code, err := run(context.Background(), args, &out)
	return code, out.String(), err
}

func TestVerifyExitsZeroWhenIntactAndOneOnABreak(t *testing.T) {
	dir, key := spoolWithRecords(t)
	if code, out, err := cli(t, "audit", "verify", "-spool", dir, "-key", key+".pub"); code != 0 || err != nil || !strings.HasPrefix(out, "OK") {
		t.Fatalf("intact: %d %v %s", code, err, out)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	b, _ := os.ReadFile(segs[0])
	os.WriteFile(segs[0], bytes.Replace(b, []byte("member-02"), []byte("member-03"), 1), 0o600)
	if code, out, _ := cli(t, "audit", "verify", "-spool", dir, "-key", key+".pub"); code != 1 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "seq 3") {
		t.Fatalf("tampered: exit %d: %s", code, out)
	}
}

func TestQueryFiltersAndExportRendersAuditEvents(t *testing.T) {
	dir, _ := spoolWithRecords(t)
	_, out, err := cli(t, "audit", "query", "-spool", dir, "-patient", "member-01", "-since", "2027-03-02")
	if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"member-01"`) {
		t.Fatalf("query: %v\n%s", err, out)
	}
	_, out, err = cli(t, "audit", "export", "-format", "auditevent", "-spool", dir, "-observer", "test")
	if err != nil || strings.Count(out, "\n") != 3 {
		t.Fatalf("export: %v\n%s", err, out)
	}
	var ae struct{ ResourceType string }
	if json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &ae); ae.ResourceType != "AuditEvent" {
		t.Fatalf("export line: %s", out)
	}
}

func TestReportCountsUniqueAndRepeatPatients(t *testing.T) {
	dir, _ := spoolWithRecords(t)
	_, out, err := cli(t, "audit", "report", "cms-patient-access", "-year", "2027", "-spool", dir, "-json")
	var r audit.CMSReport
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || r.UniquePatients != 2 || r.RepeatPatients != 1 {
		t.Fatalf("report: %v %s", err, out)
	}
}

func TestBadUsageIsExitTwoWithTheFix(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"audit", "nope"},
		{"audit", "verify", "-spool", "x"},
		{"audit", "verify", "-key", "k"},
		{"audit", "query", "-spool", "a", "-kafka", "b"},
		{"audit", "query", "-spool", "a", "-since", "yesterday"},
		{"audit", "export", "-format", "csv", "-spool", "a"},
		{"audit", "report", "cms-patient-access", "-spool", "a"},
		{"audit", "keygen"},
	} {
		code, _, err := cli(t, args...)
		if code != 2 || err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: exit %d, %v; want 2 and a one-line message", args, code, err)
		}
	}
}
