package revocation

import (
	"context"
	"errors"
	"fmt"

	"github.com/fhirwall/fhirwall/internal/token"
)

// Verifier checks access tokens (decision.Verifier; *token.Verifier is the real one).
type Verifier interface {
	Verify(ctx context.Context, raw string) (token.Identity, error)
}

// Checker says whether a verified token was revoked; *View is the real one.
type Checker interface {
	Check(ctx context.Context, id token.Identity, raw string) error
}

var (
	_ Verifier = (*token.Verifier)(nil)
	_ Verifier = (*Checked)(nil)
	_ Checker  = (*View)(nil)
)

// Checked is a Verifier that refuses revoked tokens: the inner verifier first, then the revocation view.
type Checked struct {
	inner Verifier
	view  Checker
}

// Wrap returns inner with revocation checked after it. It goes where the decision core's token verifier is
// built, so both faces (ext_authz and the standalone proxy) honour revocations alike.
func Wrap(inner Verifier, view Checker) (*Checked, error) {
	if inner == nil || view == nil {
		return nil, errors.New("revocation: Wrap needs a verifier and a view")
	}
	return &Checked{inner: inner, view: view}, nil
}

// Verify implements decision.Verifier: a revoked token is token.ErrInvalid (401, as any other bad token); a
// view that cannot tell is token.ErrUnavailable (503: fail closed). The token never reaches a log.
func (c *Checked) Verify(ctx context.Context, raw string) (token.Identity, error) {
	id, err := c.inner.Verify(ctx, raw)
	if err != nil {
		return token.Identity{}, err
	}
	switch err := c.view.Check(ctx, id, raw); {
	case err == nil:
		return id, nil
	case errors.Is(err, ErrRevoked):
		return token.Identity{}, fmt.Errorf("%w: %w", token.ErrInvalid, err)
	default:
		return token.Identity{}, fmt.Errorf("%w: %w", token.ErrUnavailable, err)
	}
}
