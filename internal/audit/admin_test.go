package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// adminRec is an admin entry as the app registry's Auditor writes it: before nil on registration.
func adminRec(action, target string, before, after string) Record {
	r := Record{Kind: KindAdmin, ID: NewID(), Time: time.Date(2027, 1, 2, 3, 4, 6, 0, time.UTC),
		Actor: "admin:alice", Action: action, Target: target, After: json.RawMessage(after)}
	if before != "" {
		r.Before = json.RawMessage(before)
	}
	return r
}

// mixedSpool writes access records and admin entries into one spool (checkpoints every 4) and closes it.
func mixedSpool(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := openSpool(t, dir, Options{CheckpointEvery: 4})
	ctx := context.Background()
	for i, r := range []Record{
		rec(0),
		adminRec("register", "patient-app", "", `{"client_id":"patient-app","state":"pending"}`),
		rec(1),
		adminRec("suspend", "patient-app", `{"client_id":"patient-app","state":"active"}`, `{"client_id":"patient-app","state":"suspended"}`),
		rec(2), rec(3), rec(4),
	} {
		if err := s.Write(ctx, r); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAdminEntriesAreSealedIntoTheAccessChainAndVerify(t *testing.T) {
	dir := mixedSpool(t)
	r := mustVerify(t, dir)
	if r.Records != 7 || r.Admin != 2 || r.Checkpoints < 3 || r.Signed != r.Last {
		t.Fatalf("want 7 records of which 2 admin, start/periodic/stop checkpoints, signed to the end: %s", r)
	}
	kinds := map[string]int{}
	for _, l := range readLines(t, lastSegment(t, dir)) {
		e, err := ParseLine(l)
		if err != nil {
			t.Fatal(err)
		}
		kinds[e.Kind]++
		var m map[string]json.RawMessage
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatal(err)
		}
		switch e.Kind {
		case KindAdmin:
			for _, k := range []string{"client_id", "api", "allow", "patients", "status"} {
				if _, ok := m[k]; ok {
					t.Errorf("admin entry carries access member %q: %s", k, l)
				}
			}
			if e.Key() != "patient-app" {
				t.Errorf("admin entry keyed %q, want its target (one app's history in one partition)", e.Key())
			}
			if e.Seq == 3 && string(m["before"]) != "null" {
				t.Errorf("registration: before = %s, want null", m["before"])
			}
		case KindAccess:
			for _, k := range []string{"actor", "action", "target", "before", "after"} {
				if _, ok := m[k]; ok {
					t.Errorf("access record carries admin member %q: %s", k, l)
				}
			}
		}
	}
	if kinds[KindAccess] != 5 || kinds[KindAdmin] != 2 || kinds[KindCheckpoint] < 3 {
		t.Errorf("kinds in the log: %v", kinds)
	}
}

func TestTamperedAdminEntryIsABreak(t *testing.T) {
	// Line k of the segment holds seq k+1; seq 1 is the start checkpoint, seq 3 the registration, seq 5 the
	// suspension, seq 6 a checkpoint (every 4 records).
	cases := []struct {
		name    string
		tamper  func(ls [][]byte) [][]byte
		seq     uint64
		problem string
	}{
		{"suspension turned into a reactivation", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"action":"suspend"`), []byte(`"action":"activate"`), 1)
			return ls
		}, 0, "does not match its hash"},
		{"actor rewritten with every later hash recomputed", func(ls [][]byte) [][]byte {
			return rechain(t, ls, 4, "admin:alice", "admin:mallory")
		}, 6, "checkpoint: signature does not verify"},
		{"registration deleted", func(ls [][]byte) [][]byte {
			return append(ls[:2:2], ls[3:]...)
		}, 3, "missing or out of order: expected seq 3, found seq 4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := mixedSpool(t)
			seg := lastSegment(t, dir)
			ls := readLines(t, seg)
			if !bytes.Contains(ls[2], []byte(`"action":"register"`)) || !bytes.Contains(ls[4], []byte(`"action":"suspend"`)) {
				t.Fatalf("the log is not laid out as the cases assume:\n%s\n%s", ls[2], ls[4])
			}
			writeLines(t, seg, c.tamper(ls))
			wantBreak(t, verifySpool(t, dir), c.seq, c.problem)
		})
	}
}

func TestTamperedAdminEntryOnTheTopicIsABreak(t *testing.T) {
	dir := mixedSpool(t)
	msgs := topicOf(t, dir, 3)
	if r := verifyTopic(t, msgs, headOf(t, dir)); r.Break != nil || r.Admin != 2 {
		t.Fatalf("intact topic: %s", r)
	}
	for i := range msgs {
		if bytes.Contains(msgs[i].Value, []byte(`"action":"suspend"`)) {
			msgs[i].Value = bytes.Replace(msgs[i].Value, []byte(`"suspended"`), []byte(`"active"`), 1)
		}
	}
	wantBreak(t, verifyTopic(t, msgs, headOf(t, dir)), 5, "does not match its hash")
}

func TestSpoolRefusesAnAdminEntryThatSaysNothing(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	defer s.Close()
	ok := adminRec("approve", "app-1", `{"state":"pending"}`, `{"state":"approved"}`)
	cases := map[string]func(r *Record){
		"no actor":             func(r *Record) { r.Actor = "" },
		"no action":            func(r *Record) { r.Action = "" },
		"no target":            func(r *Record) { r.Target = "" },
		"no after":             func(r *Record) { r.After = nil },
		"after not an object":  func(r *Record) { r.After = json.RawMessage(`"approved"`) },
		"before not an object": func(r *Record) { r.Before = json.RawMessage(`[1]`) },
		"after not even JSON":  func(r *Record) { r.After = json.RawMessage(`{"state":`) },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			r := ok
			breakIt(&r)
			if err := s.Write(context.Background(), r); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("Write = %v, want ErrIncomplete", err)
			}
		})
	}
	if err := s.Write(context.Background(), ok); err != nil {
		t.Fatalf("the complete entry: %v", err)
	}
	if st := s.Stats(); st.Durable != 2 { // the start checkpoint and the one complete entry
		t.Errorf("durable seq %d after refusals, want 2: a refused entry takes no place in the chain", st.Durable)
	}
}

func TestAccessRecordNeverCarriesAdminMembers(t *testing.T) {
	r := rec(1)
	r.Kind, r.Schema = KindAccess, SchemaVersion
	plain, err := json.Marshal(accessRecord(r))
	if err != nil {
		t.Fatal(err)
	}
	r.Actor, r.Action, r.Target, r.Reason, r.Before, r.After = "admin:x", "suspend", "app", "why", json.RawMessage(`{}`), json.RawMessage(`{}`)
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("an access record with admin members set marshals as\n%s\nwant its bytes unchanged\n%s", got, plain)
	}
}

func TestAdminEntryHasNoAuditEvent(t *testing.T) {
	r := adminRec("deactivate", "app-1", `{"state":"active"}`, `{"state":"deactivated"}`)
	r.Schema = SchemaVersion
	if _, err := AuditEvent(r, AuditEventOptions{Observer: "fhirwall-test"}); !errors.Is(err, ErrNotAccess) {
		t.Fatalf("AuditEvent(admin) = %v, want ErrNotAccess", err)
	}
}

// TestSpoolEncodingIsJSONMarshal: the spool's encode (on the hot path) writes the bytes json.Marshal does, so
// the examples (sealed from json.Marshal) are what the spool writes.
func TestSpoolEncodingIsJSONMarshal(t *testing.T) {
	for _, r := range exampleRecords() {
		a, err := r.encode()
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s record %s: encode\n%s\njson.Marshal\n%s", r.Kind, r.ID, a, b)
		}
	}
}
