package audit

import (
	"strings"
	"testing"
	"time"
)

// cmsTransfer is an allowed Patient Access read of an EOB for patients at t: the record the report counts.
func cmsTransfer(id string, t time.Time, patients ...string) Record {
	return Record{Schema: SchemaVersion, Kind: KindAccess, ID: id, Time: t, API: "patient-access", Allow: true,
		Status: 200, Patients: patients, DataCategories: []string{"claims"}, ResourceType: "ExplanationOfBenefit"}
}

func TestCMSReportCountsUniqueAndRepeatPatients(t *testing.T) {
	day := func(d, h int) time.Time { return time.Date(2026, 4, d, h, 0, 0, 0, time.UTC) }
	with := func(r Record, f func(*Record)) Record { f(&r); return r }
	cases := []struct {
		name           string
		unit           string
		records        []Record
		unique, repeat int
		transfers      int
	}{
		{
			name: "one app session of many requests is not a repeat by day",
			records: []Record{
				cmsTransfer("a", day(1, 9), "p1"), cmsTransfer("b", day(1, 9), "p1"), cmsTransfer("c", day(1, 10), "p1"),
			},
			unique: 1, repeat: 0, transfers: 3,
		},
		{
			name:    "the same session is a repeat by request",
			unit:    RepeatRequest,
			records: []Record{cmsTransfer("a", day(1, 9), "p1"), cmsTransfer("b", day(1, 9), "p1")},
			unique:  1, repeat: 1, transfers: 2,
		},
		{
			name:    "transfers on two UTC days are a repeat",
			records: []Record{cmsTransfer("a", day(1, 23), "p1"), cmsTransfer("b", day(2, 0), "p1"), cmsTransfer("c", day(2, 1), "p2")},
			unique:  2, repeat: 1, transfers: 3,
		},
		{
			name: "days are UTC days, not local ones",
			records: []Record{
				cmsTransfer("a", time.Date(2026, 4, 1, 20, 0, 0, 0, time.FixedZone("EDT", -4*3600)), "p1"), // 2 Apr 00:00 UTC
				cmsTransfer("b", day(2, 12), "p1"),
			},
			unique: 1, repeat: 0, transfers: 2,
		},
		{
			name:    "a Kafka retry of the same record counts once",
			unit:    RepeatRequest,
			records: []Record{cmsTransfer("a", day(1, 9), "p1"), cmsTransfer("a", day(1, 9), "p1")},
			unique:  1, repeat: 0, transfers: 1,
		},
		{
			name:    "a record naming several patients is a transfer of each",
			records: []Record{cmsTransfer("a", day(1, 9), "p1", "p2"), cmsTransfer("b", day(3, 9), "p2")},
			unique:  2, repeat: 1, transfers: 2,
		},
		{
			name: "what is not a transfer is not counted",
			records: []Record{
				with(cmsTransfer("r1", day(1, 9), "p1"), func(r *Record) { r.Allow, r.Status = false, 403 }),
				with(cmsTransfer("r2", day(1, 9), "p1"), func(r *Record) { r.Status = 404 }),
				with(cmsTransfer("r3", day(1, 9), "p1"), func(r *Record) { r.Status = 0 }),
				with(cmsTransfer("r4", day(1, 9), "p1"), func(r *Record) { r.API = "provider-access" }),
				with(cmsTransfer("r5", day(1, 9), "p1"), func(r *Record) { r.DataCategories = []string{} }),
				with(cmsTransfer("r6", day(1, 9)), func(r *Record) {}),
				with(cmsTransfer("r7", day(1, 9), "p1"), func(r *Record) { r.Kind = KindCheckpoint }),
				cmsTransfer("r8", time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), "p1"),
				cmsTransfer("r9", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "p1"),
			},
			unique: 0, repeat: 0, transfers: 0,
		},
		{
			name: "refusals and empty results between transfers do not make a repeat",
			records: []Record{
				cmsTransfer("a", day(1, 9), "p1"),
				with(cmsTransfer("b", day(5, 9), "p1"), func(r *Record) { r.Allow, r.Status = false, 403 }),
				with(cmsTransfer("c", day(6, 9), "p1"), func(r *Record) { r.DataCategories = []string{} }),
			},
			unique: 1, repeat: 0, transfers: 1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acc, err := NewCMSReport(CMSOptions{Year: 2026, RepeatUnit: c.unit})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range c.records {
				acc.Add(r)
			}
			got := acc.Result()
			if got.UniquePatients != c.unique || got.RepeatPatients != c.repeat || got.Transfers != c.transfers {
				t.Errorf("unique, repeat, transfers = %d, %d, %d; want %d, %d, %d",
					got.UniquePatients, got.RepeatPatients, got.Transfers, c.unique, c.repeat, c.transfers)
			}
			if got.Records != len(c.records) {
				t.Errorf("Records = %d, want %d", got.Records, len(c.records))
			}
		})
	}
}

func TestCMSReportDefaultsAndCountsDuplicates(t *testing.T) {
	acc, err := NewCMSReport(CMSOptions{Year: 2026})
	if err != nil {
		t.Fatal(err)
	}
	r := cmsTransfer("a", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "p1")
	acc.Add(r)
	acc.Add(r)
	got := acc.Result()
	want := CMSReport{Year: 2026, API: DefaultPatientAccessAPI, RepeatUnit: RepeatDay, UniquePatients: 1,
		Transfers: 1, Records: 2, Duplicates: 1}
	if got != want {
		t.Errorf("Result = %+v, want %+v", got, want)
	}
}

func TestCMSReportCountsTheConfiguredAPI(t *testing.T) {
	acc, err := NewCMSReport(CMSOptions{Year: 2026, API: "member-api"})
	if err != nil {
		t.Fatal(err)
	}
	r := cmsTransfer("a", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "p1")
	acc.Add(r)
	r.ID, r.API = "b", "member-api"
	acc.Add(r)
	if got := acc.Result(); got.UniquePatients != 1 || got.Transfers != 1 {
		t.Errorf("Result = %+v, want only the member-api record counted", got)
	}
}

func TestCMSReportRejectsUnknownRepeatUnitAndYear(t *testing.T) {
	for _, o := range []CMSOptions{{Year: 2026, RepeatUnit: "session"}, {Year: 0}} {
		if _, err := NewCMSReport(o); err == nil {
			t.Errorf("NewCMSReport(%+v) = nil error", o)
		}
	}
}

func TestCMSReportTextStatesTheDefinitionUsed(t *testing.T) {
	day := CMSReport{Year: 2026, API: "patient-access", RepeatUnit: RepeatDay, UniquePatients: 12, RepeatPatients: 5}.Text()
	req := CMSReport{Year: 2026, API: "patient-access", RepeatUnit: RepeatRequest}.Text()
	for _, want := range []string{"calendar year 2026", "transferred to an app:", " 12\n", " 5\n", "distinct UTC days"} {
		if !strings.Contains(day, want) {
			t.Errorf("Text() lacks %q:\n%s", want, day)
		}
	}
	if !strings.Contains(req, "two or more requests") {
		t.Errorf("Text() for RepeatRequest does not say so:\n%s", req)
	}
}
