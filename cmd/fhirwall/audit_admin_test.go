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

// spoolWithAdminEntries is spoolWithRecords plus, in the same chain, the registration and suspension of
// patient-app and the registration of another app.
func spoolWithAdminEntries(t *testing.T) (dir, key string) {
	t.Helper()
	dir, key = spoolWithRecords(t)
	priv, err := audit.LoadSigningKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := audit.Open(dir, audit.Options{Key: priv})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []struct{ action, target, before, after string }{
		{"register", "patient-app", "", `{"client_id":"patient-app","state":"active"}`},
		{"register", "other-app", "", `{"client_id":"other-app","state":"pending"}`},
		{"suspend", "patient-app", `{"client_id":"patient-app","state":"active"}`, `{"client_id":"patient-app","state":"suspended"}`},
	} {
		r := audit.Record{Kind: audit.KindAdmin, ID: audit.NewID(), Time: time.Date(2027, 3, 5, i, 0, 0, 0, time.UTC),
			Actor: "admin:alice", Action: e.action, Target: e.target, After: json.RawMessage(e.after)}
		if e.before != "" {
			r.Before = json.RawMessage(e.before)
		}
		if err := sp.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, key
}

func TestVerifyPassesAChainMixingAccessAdminAndCheckpointsAndCatchesATamperedAdminEntry(t *testing.T) {
	dir, key := spoolWithAdminEntries(t)
	code, out, err := cli(t, "audit", "verify", "-spool", dir, "-key", key+".pub")
	if code != 0 || err != nil || !strings.HasPrefix(out, "OK") || !strings.Contains(out, "6 records of which 3 admin") {
		t.Fatalf("intact: %d %v %s", code, err, out)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	b, _ := os.ReadFile(segs[0])
	os.WriteFile(segs[0], bytes.Replace(b, []byte(`"action":"suspend"`), []byte(`"action":"activate"`), 1), 0o600)
	if code, out, _ := cli(t, "audit", "verify", "-spool", dir, "-key", key+".pub"); code != 1 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "does not match its hash") {
		t.Fatalf("tampered admin entry: exit %d: %s", code, out)
	}
}

func TestQueryListsAnAppsAdminEntriesOnlyWhenAsked(t *testing.T) {
	dir, _ := spoolWithAdminEntries(t)
	_, out, err := cli(t, "audit", "query", "-spool", dir, "-kind", "admin", "-client", "patient-app")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"action":"register"`) || !strings.Contains(out, `"action":"suspend"`) || strings.Contains(out, "other-app") {
		t.Fatalf("query -kind admin -client patient-app: %v\n%s", err, out)
	}
	_, out, err = cli(t, "audit", "query", "-spool", dir, "-client", "patient-app")
	if err != nil || strings.Count(out, "\n") != 3 || strings.Contains(out, `"kind":"admin"`) {
		t.Fatalf("query without -kind lists access records only: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"audit", "query", "-spool", dir, "-kind", "checkpoint"},
		{"audit", "query", "-spool", dir, "-kind", "admin", "-patient", "member-01"},
		{"audit", "export", "-format", "auditevent", "-spool", dir, "-kind", "admin"},
	} {
		if code, _, err := cli(t, args...); code != 2 || err == nil {
			t.Errorf("%v: exit %d %v, want 2 and the fix", args, code, err)
		}
	}
}
