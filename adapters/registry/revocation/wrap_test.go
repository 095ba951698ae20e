package revocation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/token"
)

// verifierFake returns id, or err, for every token, and counts its calls.
type verifierFake struct {
	id    token.Identity
	err   error
	calls int
}

func (f *verifierFake) Verify(context.Context, string) (token.Identity, error) {
	f.calls++
	return f.id, f.err
}

// checkerFake answers every check with err and counts its calls.
type checkerFake struct {
	err   error
	calls int
}

func (f *checkerFake) Check(context.Context, token.Identity, string) error {
	f.calls++
	return f.err
}

var revokedAt = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// viewWith is a View (no database) holding the given revocations, fresh as of now.
func viewWith(now time.Time, jtis []string, grants map[grantKey]time.Time) *View {
	v := newView(nil, "", nil)
	v.now = func() time.Time { return now }
	s := &snapshot{tokens: map[string]struct{}{}, grants: grants}
	for _, j := range jtis {
		s.tokens[j] = struct{}{}
	}
	if s.grants == nil {
		s.grants = map[grantKey]time.Time{}
	}
	v.snap.Store(s)
	v.fresh.Mark(now)
	return v
}

func identity(jti string, authTime, iat time.Time) token.Identity {
	return token.Identity{Issuer: "https://idp", ClientID: "patient-app", Subject: "member-01", JTI: jti,
		AuthTime: authTime, IssuedAt: iat, Expiry: revokedAt.Add(time.Hour)}
}

func TestRevokedTokenIsRefusedAsInvalidAndOthersPass(t *testing.T) {
	view := viewWith(revokedAt, []string{"j-revoked"}, nil)
	for _, tc := range []struct {
		jti     string
		refused bool
	}{{"j-revoked", true}, {"j-other", false}} {
		inner := &verifierFake{id: identity(tc.jti, time.Time{}, revokedAt)}
		c, err := Wrap(inner, view)
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.Verify(context.Background(), "raw")
		if tc.refused {
			if !errors.Is(err, token.ErrInvalid) || !errors.Is(err, ErrRevoked) || id.ClientID != "" {
				t.Errorf("%s: got %+v, %v; want ErrInvalid (revoked) and no identity", tc.jti, id, err)
			}
			continue
		}
		if err != nil || id.JTI != tc.jti {
			t.Errorf("%s: got %+v, %v; want it accepted", tc.jti, id, err)
		}
	}
}

func TestGrantRevocationRefusesTokensSignedInAtOrBeforeItOnly(t *testing.T) {
	grants := map[grantKey]time.Time{{"member-01", "patient-app"}: revokedAt.Add(500 * time.Millisecond),
		{"member-03", "patient-app"}: revokedAt}
	view := viewWith(revokedAt.Add(time.Minute), nil, grants)
	before, sameSecond, after := revokedAt.Add(-time.Hour), revokedAt, revokedAt.Add(2*time.Second)
	for _, tc := range []struct {
		name    string
		id      token.Identity
		refused bool
	}{
		{"refreshed after the revocation, signed in before it", identity("a", before, after), true},
		{"signed in in the revocation's own second", identity("b", sameSecond, after), true},
		{"signed in again after the revocation", identity("c", after, after), false},
		{"signed in exactly when revoked", func() token.Identity {
			id := identity("i", revokedAt, after)
			id.Subject = "member-03"
			return id
		}(), true},
		{"no auth_time: iat before the revocation", identity("d", time.Time{}, before), true},
		{"no auth_time: iat after the revocation", identity("e", time.Time{}, after), false},
		{"neither auth_time nor iat", identity("f", time.Time{}, time.Time{}), true},
		{"another client of the same member", func() token.Identity {
			id := identity("g", before, before)
			id.ClientID = "other-app"
			return id
		}(), false},
		{"another member of the same client", func() token.Identity {
			id := identity("h", before, before)
			id.Subject = "member-02"
			return id
		}(), false},
	} {
		c, _ := Wrap(&verifierFake{id: tc.id}, view)
		_, err := c.Verify(context.Background(), "raw")
		if got := errors.Is(err, token.ErrInvalid); got != tc.refused || (!tc.refused && err != nil) {
			t.Errorf("%s: err %v; want refused=%v", tc.name, err, tc.refused)
		}
	}
}

func TestTokenWithoutJTIIsRevokedByTheDigestOfItsBytes(t *testing.T) {
	view := viewWith(revokedAt, []string{TokenKey("opaque-1")}, nil)
	c, _ := Wrap(&verifierFake{id: identity("", time.Time{}, revokedAt)}, view)
	if _, err := c.Verify(context.Background(), "opaque-1"); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked opaque token: %v; want ErrRevoked", err)
	}
	if _, err := c.Verify(context.Background(), "opaque-2"); err != nil {
		t.Errorf("another opaque token: %v; want accepted", err)
	}
}

func TestViewThatCannotTellFailsClosedAsUnavailable(t *testing.T) {
	c, _ := Wrap(&verifierFake{id: identity("j", time.Time{}, revokedAt)}, &checkerFake{err: ErrStale})
	if _, err := c.Verify(context.Background(), "raw"); !errors.Is(err, token.ErrUnavailable) || errors.Is(err, token.ErrInvalid) {
		t.Fatalf("got %v; want ErrUnavailable (503), not ErrInvalid", err)
	}
}

func TestStaleViewRefusesEveryCheckAndReadyReportsIt(t *testing.T) {
	now := revokedAt
	view := viewWith(now, nil, nil)
	view.now = func() time.Time { return now }
	c, _ := Wrap(&verifierFake{id: identity("j", time.Time{}, revokedAt)}, view)
	now = now.Add(DefaultStaleAfter - time.Millisecond)
	if _, err := c.Verify(context.Background(), "raw"); err != nil {
		t.Fatalf("within the bound: %v", err)
	}
	now = now.Add(2 * time.Millisecond)
	if _, err := c.Verify(context.Background(), "raw"); !errors.Is(err, token.ErrUnavailable) {
		t.Fatalf("past the bound: %v; want ErrUnavailable", err)
	}
	if err := view.Ready(context.Background()); !errors.Is(err, ErrStale) {
		t.Fatalf("Ready past the bound: %v; want ErrStale", err)
	}
}

func TestInnerRefusalIsReturnedWithoutConsultingTheView(t *testing.T) {
	for _, want := range []error{token.ErrInvalid, token.ErrUnavailable} {
		view := &checkerFake{}
		c, _ := Wrap(&verifierFake{err: want}, view)
		if _, err := c.Verify(context.Background(), "raw"); !errors.Is(err, want) || view.calls != 0 {
			t.Errorf("inner %v: got %v after %d view checks; want the inner error, no check", want, err, view.calls)
		}
	}
}

func TestWrapRefusesMissingParts(t *testing.T) {
	if _, err := Wrap(nil, &checkerFake{}); err == nil {
		t.Error("no verifier: accepted")
	}
	if _, err := Wrap(&verifierFake{}, nil); err == nil {
		t.Error("no view: accepted")
	}
}
