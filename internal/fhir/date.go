package fhir

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrDate: a value is not a FHIR date, dateTime or instant. Callers deciding access fail closed on it.
var ErrDate = errors.New("not a FHIR date, dateTime or instant")

// ParseDate reads a FHIR date, dateTime or instant (R4 §2.24.0.2 date, dateTime, instant) and returns the
// interval it covers, [start, end): a partial date means the whole year, month or day it names, and a time
// the whole second, or the whole unit of its last fractional digit ("10:00:00.5" covers 500 ms). R4
// Period.end "includes any matching date/time", so a period ends at end, not at start.
//
// Accepted forms: YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm). The year is
// 0001…9999. A time needs its zone (R4: "If hours and minutes are specified, a time zone SHALL be
// populated"); dates without a time have none and are read in UTC. Leap seconds (":60") and zones beyond
// ±14:00 are refused rather than guessed. Times keep the zone they were written in, so a caller can read
// the calendar date the author meant (start.Date()).
func ParseDate(s string) (start, end time.Time, err error) {
	bad := func() (time.Time, time.Time, error) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: %.40q", ErrDate, s)
	}
	p := dateParser{s: s}
	year := p.digits(4)
	if year < 1 {
		return bad()
	}
	month, day := 1, 1
	step := func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }
	if p.done() {
		t := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		return t, step(t), nil
	}
	if !p.lit('-') {
		return bad()
	}
	if month = p.digits(2); month < 1 || month > 12 {
		return bad()
	}
	step = func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	if !p.done() {
		if !p.lit('-') {
			return bad()
		}
		if day = p.digits(2); day < 1 || day > daysIn(year, month) {
			return bad()
		}
		step = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	}
	if p.done() {
		t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		return t, step(t), nil
	}
	if p.i != len("YYYY-MM-DD") || !p.lit('T') {
		return bad()
	}
	hour, minute := p.digits(2), -1
	if hour < 0 || hour > 23 || !p.lit(':') {
		return bad()
	}
	if minute = p.digits(2); minute < 0 || minute > 59 || !p.lit(':') {
		return bad()
	}
	sec := p.digits(2)
	if sec < 0 || sec > 59 {
		return bad()
	}
	nsec, unit := 0, time.Second
	if p.lit('.') {
		n := 0
		for !p.done() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			if n == 9 {
				return bad()
			}
			nsec = nsec*10 + int(p.s[p.i]-'0')
			p.i++
			n++
		}
		if n == 0 {
			return bad()
		}
		for k := 0; k < n; k++ {
			unit /= 10
		}
		nsec *= int(unit)
	}
	var loc *time.Location
	switch {
	case p.lit('Z'):
		loc = time.UTC
	case !p.done() && (p.s[p.i] == '+' || p.s[p.i] == '-'):
		sign := 1
		if p.s[p.i] == '-' {
			sign = -1
		}
		p.i++
		zh := p.digits(2)
		if zh < 0 || !p.lit(':') {
			return bad()
		}
		zm := p.digits(2)
		if zm < 0 || zm > 59 || zh > 14 || zh == 14 && zm != 0 {
			return bad()
		}
		loc = time.FixedZone("", sign*(zh*3600+zm*60))
	default:
		return bad()
	}
	if !p.done() {
		return bad()
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	return t, t.Add(unit), nil
}

// dateParser reads fixed-width ASCII fields left to right.
type dateParser struct {
	s string
	i int
}

func (p *dateParser) done() bool { return p.i == len(p.s) }

func (p *dateParser) lit(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// digits reads exactly n ASCII digits, -1 when they are not there.
func (p *dateParser) digits(n int) int {
	if len(p.s)-p.i < n {
		return -1
	}
	for _, c := range []byte(p.s[p.i : p.i+n]) {
		if c < '0' || c > '9' {
			return -1
		}
	}
	v, _ := strconv.Atoi(p.s[p.i : p.i+n])
	p.i += n
	return v
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
