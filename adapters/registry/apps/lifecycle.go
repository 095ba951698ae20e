package apps

import (
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// CanTransition reports whether the lifecycle allows moving an app from one state to another:
// pending → approved → active ⇄ suspended, and any state but deactivated → deactivated. Nothing else: no
// shortcut from pending to active (a sandbox app is approved and then activated by its caller, two events),
// no way back from deactivated, no "change" to the same state.
func CanTransition(from, to State) bool {
	switch {
	case from == StateDeactivated || !known(from):
		return false
	case to == StateDeactivated:
		return true
	}
	return from == StatePending && to == StateApproved ||
		from == StateApproved && to == StateActive ||
		from == StateActive && to == StateSuspended ||
		from == StateSuspended && to == StateActive
}

// TransitionAction names a state change in an Event's Action: approve, activate, suspend, reactivate,
// deactivate; "" when CanTransition refuses it.
func TransitionAction(from, to State) string {
	if !CanTransition(from, to) {
		return ""
	}
	switch {
	case to == StateApproved:
		return "approve"
	case to == StateSuspended:
		return "suspend"
	case to == StateDeactivated:
		return "deactivate"
	case from == StateSuspended:
		return "reactivate"
	default:
		return "activate"
	}
}

func known(s State) bool {
	return slices.Contains([]State{StatePending, StateApproved, StateActive, StateSuspended, StateDeactivated}, s)
}

// ToClient is the gateway's view of an app: active only in state active; its APIs and scopes are the approved
// ones (never the requested ones). A sandbox app's APIs are the sandboxes of the approved ones
// ("patient-access" becomes "patient-access-sandbox"; an API without a sandbox then names none configured, so
// the app reaches nothing there), and a production app never gets a sandbox API: the environment, not the
// approved list, decides whether an app sees real members' data. An environment that is neither is a sandbox.
// The slices are copies.
func ToClient(a App) decision.Client {
	return decision.Client{
		ID:          a.ClientID,
		Name:        a.Name,
		Active:      a.State == StateActive,
		APIs:        environmentAPIs(a.Environment, a.ApprovedAPIs),
		Scopes:      slices.Clone(a.ApprovedScopes),
		Tier:        a.Tier,
		Org:         a.ProviderOrg,
		NotifyHosts: slices.Clone(a.NotifyHosts),
	}
}

// sandboxSuffix ends a sandbox API's name (config.SandboxSuffix, which the decision core keys on too).
const sandboxSuffix = "-sandbox"

func environmentAPIs(env Environment, approved []string) []string {
	out := make([]string, 0, len(approved))
	for _, api := range approved {
		isSandbox := strings.HasSuffix(api, sandboxSuffix)
		switch {
		case env == Production && isSandbox:
			continue
		case env != Production && !isSandbox:
			api += sandboxSuffix
		}
		if !slices.Contains(out, api) {
			out = append(out, api)
		}
	}
	return out
}
