package config

import (
	"testing"
	"time"
)

// A notice's dates quoted as strings (Helm's toYaml quotes every timestamp) load as the same times as bare
// YAML timestamps.
func TestQuotedNoticeTimesLoad(t *testing.T) {
	body := "registry: {file: clients.yaml}\nnotices:\n  - {id: n1, kind: deprecation, api: patient-access, title: t, " +
		"published: '2026-11-02T00:00:00Z', deprecation: \"2026-12-01T00:00:00Z\", sunset: 2027-06-30T00:00:00Z}\n"
	c, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Notices[0]
	if !n.Published.Equal(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)) || !n.Deprecation.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) ||
		!n.Sunset.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("notice times %v %v %v", n.Published, n.Deprecation, n.Sunset)
	}
	if _, err := Load(writeConfig(t, "registry: {file: clients.yaml}\nnotices:\n  - {id: n1, kind: deprecation, api: patient-access, title: t, published: 'next tuesday'}\n")); err == nil {
		t.Fatal("a date that is not RFC 3339 loaded")
	}
}
