package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// ImportReason is the reason recorded on each app Import registers.
const ImportReason = "imported from the file registry (config/clients.yaml)"

// Import registers the file registry's clients (config/clients.yaml) in s as production apps: active when the
// file says active, suspended otherwise, with the file's APIs and scopes both requested and approved. A client
// already registered is left as it is, so running Import again changes nothing. It returns how many apps it
// registered; on error, those registered before it stay.
//
// The file says nothing of contacts, redirect URIs, launch types or keys: imported apps predate the
// registration policy, and are not checked against it. An update through the admin API is.
func Import(ctx context.Context, s apps.Store, clients []decision.Client, actor string) (int, error) {
	sorted := slices.Clone(clients)
	slices.SortFunc(sorted, func(a, b decision.Client) int { return strings.Compare(a.ID, b.ID) })
	n := 0
	for _, c := range sorted {
		state := apps.StateActive
		if !c.Active {
			state = apps.StateSuspended
		}
		a := apps.App{
			ClientID: c.ID, Name: c.Name,
			RequestedAPIs: slices.Clone(c.APIs), RequestedScopes: slices.Clone(c.Scopes),
			ApprovedAPIs: slices.Clone(c.APIs), ApprovedScopes: slices.Clone(c.Scopes),
			Environment: apps.Production, State: state, Tier: c.Tier, ProviderOrg: c.Org,
			NotifyHosts: slices.Clone(c.NotifyHosts),
		}
		var err error
		if ps, ok := s.(*Store); ok {
			_, err = ps.create(ctx, a, actor, ImportReason, "import") // the event says what happened
		} else {
			_, err = s.Create(ctx, a, actor, ImportReason)
		}
		switch {
		case errors.Is(err, apps.ErrExists): // imported before, or registered since: the registry wins
		case err != nil:
			return n, fmt.Errorf("registry: import %s: %w", c.ID, err)
		default:
			n++
		}
	}
	return n, nil
}
