package decision

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/policy"
)

// fakeAllowPolicy allows everything with no obligations.
type fakeAllowPolicy struct{}

func (fakeAllowPolicy) Decide(context.Context, any) (policy.Result, error) {
	return policy.Result{Allow: true, Status: 200, Reasons: []string{"fake_allow"}}, nil
}
func (fakeAllowPolicy) Revision() string { return "fake-allow" }

func TestDryRunLogsDisagreementsAndNeverChangesTheAnswer(t *testing.T) {
	var logs bytes.Buffer
	for _, tc := range []struct {
		name          string
		enforced, dry Policy
		wantAllow     bool
		wantLog       string
	}{
		{"candidate would refuse what is allowed", fakeAllowPolicy{}, &fakeRecordingPolicy{}, true, "dry-run: candidate policy would refuse"},
		{"candidate would allow what is refused", &fakeRecordingPolicy{}, fakeAllowPolicy{}, false, "dry-run: candidate policy would allow"},
		{"agreement is not logged", fakeAllowPolicy{}, fakeAllowPolicy{}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			c, _, _ := newRegistryCore(fakeRealmRegistry())
			c.Log = slog.New(slog.NewTextHandler(&logs, nil))
			c.Policy, c.DryRun = tc.enforced, tc.dry
			d := decideWith(c, "patient-access", "patient-app")
			if d.Allow != tc.wantAllow {
				t.Fatalf("dry run changed the answer: allow=%v", d.Allow)
			}
			got := logs.String()
			if tc.wantLog == "" && strings.Contains(got, "dry-run") || tc.wantLog != "" && !strings.Contains(got, tc.wantLog) {
				t.Fatalf("log %q, want %q", got, tc.wantLog)
			}
		})
	}
}
