package apps

import (
	"slices"
	"testing"
)

func TestLifecycleAllowsOnlyItsTransitions(t *testing.T) {
	states := []State{StatePending, StateApproved, StateActive, StateSuspended, StateDeactivated}
	allowed := map[[2]State]string{
		{StatePending, StateApproved}:      "approve",
		{StateApproved, StateActive}:       "activate",
		{StateActive, StateSuspended}:      "suspend",
		{StateSuspended, StateActive}:      "reactivate",
		{StatePending, StateDeactivated}:   "deactivate",
		{StateApproved, StateDeactivated}:  "deactivate",
		{StateActive, StateDeactivated}:    "deactivate",
		{StateSuspended, StateDeactivated}: "deactivate",
	}
	for _, from := range append(states, "", "live") {
		for _, to := range append(states, "", "live") {
			want, ok := allowed[[2]State{from, to}]
			if got := CanTransition(from, to); got != ok {
				t.Errorf("CanTransition(%q, %q) = %v, want %v", from, to, got, ok)
			}
			if got := TransitionAction(from, to); got != want {
				t.Errorf("TransitionAction(%q, %q) = %q, want %q", from, to, got, want)
			}
		}
	}
}

func TestPendingAppCannotJumpToActive(t *testing.T) {
	if CanTransition(StatePending, StateActive) {
		t.Error("pending → active allowed: a sandbox app is approved, then activated")
	}
}

func TestDeactivatedIsTerminal(t *testing.T) {
	for _, to := range []State{StatePending, StateApproved, StateActive, StateSuspended, StateDeactivated} {
		if CanTransition(StateDeactivated, to) {
			t.Errorf("deactivated → %s allowed", to)
		}
	}
}

func TestToClientIsActiveOnlyInStateActiveWithApprovedAPIsAndScopes(t *testing.T) {
	a := validPatientApp()
	a.RequestedScopes = []string{"patient/*.rs"}
	a.ApprovedScopes = []string{"patient/Observation.rs"}
	a.ProviderOrg, a.NotifyHosts = "Organization/o", []string{"hooks.example"}
	a.Environment = Production // a sandbox app's APIs are the sandboxes (TestSandboxAppReachesOnlySandboxAPIsAndProductionAppNone)
	for _, s := range []State{StatePending, StateApproved, StateActive, StateSuspended, StateDeactivated} {
		a.State = s
		c := ToClient(a)
		if c.Active != (s == StateActive) {
			t.Errorf("%s: Active = %v", s, c.Active)
		}
	}
	a.State = StateActive
	c := ToClient(a)
	if c.ID != a.ClientID || c.Name != a.Name || c.Tier != a.Tier || c.Org != a.ProviderOrg ||
		!slices.Equal(c.APIs, a.ApprovedAPIs) || !slices.Equal(c.Scopes, a.ApprovedScopes) || !slices.Equal(c.NotifyHosts, a.NotifyHosts) {
		t.Errorf("ToClient = %+v", c)
	}
	c.Scopes[0] = "changed"
	if a.ApprovedScopes[0] == "changed" {
		t.Error("ToClient shares the app's slices")
	}
}

func TestSandboxAppReachesOnlySandboxAPIsAndProductionAppNone(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      Environment
		approved []string
		want     []string
	}{
		{"sandbox app: each approved API's sandbox", Sandbox, []string{"patient-access", "provider-access"}, []string{"patient-access-sandbox", "provider-access-sandbox"}},
		{"sandbox app approved a sandbox by name keeps it, once", Sandbox, []string{"patient-access-sandbox", "patient-access"}, []string{"patient-access-sandbox"}},
		{"sandbox app of an API without a sandbox reaches none configured", Sandbox, []string{"prior-auth"}, []string{"prior-auth-sandbox"}},
		{"production app: the approved APIs", Production, []string{"patient-access", "prior-auth"}, []string{"patient-access", "prior-auth"}},
		{"production app never gets a sandbox", Production, []string{"patient-access-sandbox", "patient-access"}, []string{"patient-access"}},
		{"an unknown environment is a sandbox", "staging", []string{"patient-access"}, []string{"patient-access-sandbox"}},
		{"nothing approved, nothing reached", Sandbox, nil, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			approved := slices.Clone(tc.approved)
			c := ToClient(App{ClientID: "app", State: StateActive, Environment: tc.env, ApprovedAPIs: approved})
			if !slices.Equal(c.APIs, tc.want) {
				t.Fatalf("APIs %v, want %v", c.APIs, tc.want)
			}
			if !slices.Equal(approved, tc.approved) {
				t.Fatalf("the app's approved APIs were changed: %v", approved)
			}
		})
	}
}
