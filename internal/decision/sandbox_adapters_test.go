package decision

import "testing"

func TestDecisionSandboxIsTheAPIsNameRule(t *testing.T) {
	for api, want := range map[string]bool{"payer-to-payer-sandbox": true, "prior-auth-sandbox": true,
		"payer-to-payer": false, "prior-auth": false, "-sandbox": false, "": false} {
		if got := (&Decision{Input: Input{API: api}}).Sandbox(); got != want {
			t.Errorf("Sandbox() of %q = %v, want %v", api, got, want)
		}
	}
	if (*Decision)(nil).Sandbox() {
		t.Error("a nil decision is no sandbox's")
	}
}
