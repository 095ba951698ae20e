package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func bulkRecord(n int) Record {
	r := rec(0)
	r.Patients = make([]string, n)
	for i := range r.Patients {
		r.Patients[i] = fmt.Sprintf("Patient/member-%06d", i)
	}
	r.RequestID = NewID()
	return r
}

// spoolRecords returns every access record of a spool, in chain order, as written.
func spoolRecords(t *testing.T, dir string) []Record {
	t.Helper()
	var out []Record
	err := ReadSpool(dir, func(raw []byte, _ string) error {
		var r Record
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		if r.Kind == KindAccess {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSplitPatientsKeepsOrderAndBound(t *testing.T) {
	ps := bulkRecord(1000).Patients
	for _, max := range []int{1, 30, 100, 4096, 1 << 20} {
		parts := SplitPatients(ps, max)
		var joined []string
		for _, p := range parts {
			if len(p) == 0 {
				t.Fatalf("max %d: an empty part", max)
			}
			b, _ := json.Marshal(p)
			if len(p) > 1 && len(b) > max {
				t.Fatalf("max %d: a part of %d patients encodes to %d bytes", max, len(p), len(b))
			}
			joined = append(joined, p...)
		}
		if !slices.Equal(joined, ps) {
			t.Fatalf("max %d: parts do not join back to the list", max)
		}
	}
	if got := SplitPatients(nil, 10); len(got) != 1 || got[0] != nil {
		t.Fatalf("no patients: %q", got)
	}
}

func TestBulkRecordIsWrittenAsCompleteLinkedPartsThatVerify(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{PartPatientBytes: 64 << 10})
	before, after := rec(1), rec(2)
	big := bulkRecord(20000)
	for _, r := range []Record{before, big, after} {
		if err := s.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir)
	got := spoolRecords(t, dir)
	if got[0].ID != before.ID || got[len(got)-1].ID != after.ID {
		t.Fatalf("the parts are not between the records written before and after")
	}
	parts := got[1 : len(got)-1]
	if len(parts) < 3 {
		t.Fatalf("want the 20,000 patients in several parts, got %d", len(parts))
	}
	var joined []string
	for i, p := range parts {
		if p.SplitID != big.ID || p.Part != i+1 || p.Parts != len(parts) || p.ID != fmt.Sprintf("%s-%d", big.ID, i+1) {
			t.Fatalf("part %d: split_id %q part %d/%d id %q", i+1, p.SplitID, p.Part, p.Parts, p.ID)
		}
		if p.RequestID != big.RequestID || p.ClientID != big.ClientID || p.Path != big.Path || p.Status != big.Status {
			t.Fatalf("part %d does not repeat the request's members", i+1)
		}
		if b, _ := json.Marshal(p.Patients); len(b) > 64<<10 {
			t.Fatalf("part %d: %d bytes of patients", i+1, len(b))
		}
		joined = append(joined, p.Patients...)
	}
	if !slices.Equal(joined, big.Patients) {
		t.Fatal("the parts' patients are not the record's")
	}
	// A record written whole carries no part members at all.
	raw := sealedRecord(t, before)
	if strings.Contains(string(raw), `"part"`) || strings.Contains(string(raw), `"split_id"`) {
		t.Fatalf("an unsplit record carries part members: %s", raw)
	}
}

func TestFiftyThousandPatientRecordFitsTheDefaultBound(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	big := bulkRecord(50000)
	if err := s.Write(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	s.Close()
	mustVerify(t, dir)
	largest := 0
	_ = ReadSpool(dir, func(raw []byte, _ string) error { largest = max(largest, len(raw)); return nil })
	got := spoolRecords(t, dir)
	t.Logf("50,000 patients: %d parts, largest entry %d bytes", len(got), largest)
	if len(got) < 2 || largest > DefaultPartPatientBytes+4<<10 {
		t.Fatalf("%d parts, largest entry %d bytes", len(got), largest)
	}
}

func TestPartsOfASplitRecordAreAllOrNothingUnderTheBudget(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{PartPatientBytes: 16 << 10, MaxBytes: 64 << 10, SegmentBytes: 8 << 10})
	defer s.Close()
	durable := s.Stats().Durable
	if err := s.Write(context.Background(), bulkRecord(5000)); !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	if st := s.Stats(); st.Durable != durable {
		t.Fatalf("a refused split record left %d entries in the log", st.Durable-durable)
	}
	write(t, s, 3) // the spool still takes records that fit
}

func TestEntryLongerThanMaxEntryBytesIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	defer s.Close()
	r := rec(0)
	r.Query = strings.Repeat("q", MaxEntryBytes)
	if err := s.Write(context.Background(), r); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	write(t, s, 1)
}

func TestCMSReportCountsASplitRecordAsOneTransfer(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{PartPatientBytes: 4 << 10})
	big := bulkRecord(2000)
	if err := s.Write(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, unit := range []string{RepeatDay, RepeatRequest} {
		a, err := NewCMSReport(CMSOptions{Year: 2027, RepeatUnit: unit})
		if err != nil {
			t.Fatal(err)
		}
		parts := spoolRecords(t, dir)
		for _, r := range parts {
			a.Add(r)
		}
		if rep := a.Result(); rep.Transfers != 1 || rep.UniquePatients != 2000 || rep.RepeatPatients != 0 || len(parts) < 2 {
			t.Fatalf("%s: %d parts: %+v", unit, len(parts), rep)
		}
	}
}

func FuzzSplitPatients(f *testing.F) {
	f.Add("a,b,c", 5)
	f.Add("Patient/1,\"q\",\u2028,", 1)
	f.Add("", 100)
	f.Fuzz(func(t *testing.T, list string, max int) {
		ps := strings.Split(list, ",")
		max = max%4096 + 1
		if max < 0 {
			max = -max + 1
		}
		var joined []string
		for _, p := range SplitPatients(ps, max) {
			if b, _ := json.Marshal(p); len(p) > 1 && len(b) > max {
				t.Fatalf("a part of %d encodes to %d > %d", len(p), len(b), max)
			}
			if len(p) == 0 && len(ps) > 0 {
				t.Fatal("an empty part")
			}
			joined = append(joined, p...)
		}
		if !slices.Equal(joined, ps) {
			t.Fatalf("%q does not join back to %q", joined, ps)
		}
	})
}

func TestEachPartOfASplitRecordExportsAsAnAuditEventLinkedByRequestID(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{PartPatientBytes: 4 << 10})
	big := bulkRecord(1000)
	if err := s.Write(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	s.Close()
	parts := spoolRecords(t, dir)
	for _, p := range parts {
		b, err := AuditEvent(p, aeOptions)
		if err != nil {
			t.Fatalf("part %d: %v", p.Part, err)
		}
		if !strings.Contains(string(b), `"id":"`+p.ID+`"`) || !strings.Contains(string(b), big.RequestID) {
			t.Fatalf("part %d: the AuditEvent lacks its id or the shared request id", p.Part)
		}
	}
	if len(parts) < 2 {
		t.Fatalf("%d parts", len(parts))
	}
}
