package apps

import (
	"slices"

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
// ones (never the requested ones). The slices are copies.
func ToClient(a App) decision.Client {
	return decision.Client{
		ID:          a.ClientID,
		Name:        a.Name,
		Active:      a.State == StateActive,
		APIs:        slices.Clone(a.ApprovedAPIs),
		Scopes:      slices.Clone(a.ApprovedScopes),
		Tier:        a.Tier,
		Org:         a.ProviderOrg,
		NotifyHosts: slices.Clone(a.NotifyHosts),
	}
}
