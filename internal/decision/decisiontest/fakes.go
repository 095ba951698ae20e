// Package decisiontest holds fakes of the decision core's outside sources for other packages' tests: a token
// verifier and a client registry that answer from a map. Named fakes: nothing here verifies or looks up
// anything real.
package decisiontest

import (
	"context"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/token"
)

// FakeTokens accepts the tokens in its map (raw token → identity) and nothing else.
type FakeTokens map[string]token.Identity

// Verify implements decision.Verifier.
func (f FakeTokens) Verify(_ context.Context, raw string) (token.Identity, error) {
	if id, ok := f[raw]; ok {
		return id, nil
	}
	return token.Identity{}, token.ErrInvalid
}

// FakeRegistry registers the clients in its map (client id → client).
type FakeRegistry map[string]decision.Client

// Lookup implements decision.Registry.
func (f FakeRegistry) Lookup(_ context.Context, id string) (decision.Client, error) {
	if c, ok := f[id]; ok {
		return c, nil
	}
	return decision.Client{}, decision.ErrUnknownClient
}

var (
	_ decision.Verifier = FakeTokens(nil)
	_ decision.Registry = FakeRegistry(nil)
)
