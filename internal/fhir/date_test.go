package fhir

import (
	"errors"
	"regexp"
	"testing"
	"time"
)

func TestParseDateGivesTheIntervalAPartialDateCovers(t *testing.T) {
	utc := func(y, mo, d, h, mi, s, ns int) time.Time {
		return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC)
	}
	plus1 := time.FixedZone("", 3600)
	for _, tc := range []struct {
		in         string
		start, end time.Time
	}{
		{"2016", utc(2016, 1, 1, 0, 0, 0, 0), utc(2017, 1, 1, 0, 0, 0, 0)},
		{"2015-12", utc(2015, 12, 1, 0, 0, 0, 0), utc(2016, 1, 1, 0, 0, 0, 0)},
		{"2024-02", utc(2024, 2, 1, 0, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0, 0)},
		{"2024-02-29", utc(2024, 2, 29, 0, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0, 0)},
		{"2026-06-01T12:00:00Z", utc(2026, 6, 1, 12, 0, 0, 0), utc(2026, 6, 1, 12, 0, 1, 0)},
		{"2026-06-01T12:00:00.5Z", utc(2026, 6, 1, 12, 0, 0, 5e8), utc(2026, 6, 1, 12, 0, 0, 6e8)},
		{"2026-06-01T12:00:00.123456789Z", utc(2026, 6, 1, 12, 0, 0, 123456789), utc(2026, 6, 1, 12, 0, 0, 123456790)},
		{"2016-01-01T00:30:00+01:00", time.Date(2016, 1, 1, 0, 30, 0, 0, plus1), time.Date(2016, 1, 1, 0, 30, 1, 0, plus1)},
		{"2016-01-01T00:30:00-14:00", utc(2016, 1, 1, 14, 30, 0, 0), utc(2016, 1, 1, 14, 30, 1, 0)},
		{"0001", utc(1, 1, 1, 0, 0, 0, 0), utc(2, 1, 1, 0, 0, 0, 0)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			start, end, err := ParseDate(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !start.Equal(tc.start) || !end.Equal(tc.end) {
				t.Errorf("[%v, %v), want [%v, %v)", start, end, tc.start, tc.end)
			}
		})
	}
}

func TestParseDateKeepsTheWrittenZoneForTheCalendarDate(t *testing.T) {
	start, _, err := ParseDate("2016-01-01T00:30:00+01:00")
	if err != nil {
		t.Fatal(err)
	}
	if y, m, d := start.Date(); y != 2016 || m != 1 || d != 1 {
		t.Errorf("calendar date %d-%d-%d, want the one written", y, m, d)
	}
}

func TestParseDateRefusesWhatIsNotAFHIRDate(t *testing.T) {
	for _, in := range []string{
		"", "soon", "16", "20160", "0000", "2016-13-01", "2016-00-01", "2016-02-30", "2023-02-29", "2016-1-01",
		"2016-01-1", "2016-01-01T", "2016-01-01T10:00", "2016-01-01T10:00:00", // a time needs its zone
		"2016-01-01T24:00:00Z", "2016-01-01T10:60:00Z", "2016-01-01T10:00:60Z", "2016-01-01T10:00:00.Z",
		"2016-01-01T10:00:00.1234567890Z", "2016-01-01T10:00:00+15:00", "2016-01-01T10:00:00+14:30",
		"2016-01-01T10:00:00+0100", "2016-01-01T10:00:00z", "2016-01-01t10:00:00Z", "2016-01-01 10:00:00Z",
		"2016-01T10:00:00Z", "2016T10:00:00Z", " 2016", "2016 ", "2016-01-01Z", "+2016", "２０１６",
		"2016-01-01T10:00:00Z ", "2016-01-01T10:00:00ZZ",
	} {
		if s, e, err := ParseDate(in); !errors.Is(err, ErrDate) {
			t.Errorf("%q: [%v, %v) %v, want ErrDate", in, s, e, err)
		}
	}
}

// fhirDate is R4's regular expression for dateTime (§2.24.0.2) with the zone made mandatory after a time,
// as the specification's text requires, and without leap seconds, which ParseDate refuses.
var fhirDate = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)` +
	`(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?` +
	`(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)

func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"2016", "2015-12", "2024-02-29", "2016-01-01T00:30:00+01:00",
		"2026-06-01T12:00:00.123Z", "2016-13-01", "2016-01-01T10:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := ParseDate(s)
		if err != nil {
			if !errors.Is(err, ErrDate) {
				t.Fatalf("%q: error of another kind: %v", s, err)
			}
			if fhirDate.MatchString(s) && validDay(s) {
				t.Fatalf("%q: refused a FHIR date: %v", s, err)
			}
			return
		}
		if !fhirDate.MatchString(s) {
			t.Fatalf("%q: accepted what R4 does not", s)
		}
		if !start.Before(end) {
			t.Fatalf("%q: empty interval [%v, %v)", s, start, end)
		}
		// Every prefix of a date covers it: "2016-03" covers "2016-03-04T…".
		for _, n := range []int{4, 7, 10} {
			if len(s) > n {
				ps, pe, err := ParseDate(s[:n])
				if err != nil {
					t.Fatalf("%q: prefix %q refused", s, s[:n])
				}
				// Compared by wall clock: the prefix has no zone, the time was written in its own.
				y, mo, d := start.Date()
				h, mi, sec := start.Clock()
				wall := time.Date(y, mo, d, h, mi, sec, start.Nanosecond(), time.UTC)
				if wall.Before(ps) || !wall.Before(pe) {
					t.Fatalf("%q not within its prefix %q", s, s[:n])
				}
			}
		}
	})
}

// validDay: the regular expression lets through days a month does not have (2023-02-29).
func validDay(s string) bool {
	if len(s) < 10 {
		return true
	}
	_, err := time.Parse("2006-01-02", s[:10])
	return err == nil
}
