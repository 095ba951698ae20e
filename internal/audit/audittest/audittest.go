// Package audittest gives a test an audit spool of its own: a fresh signing key, a temporary directory, and
// the spool closed when the test ends.
package audittest

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// Spool is an audit spool in a temporary directory, signed by a fresh key and closed when t ends (closing
// it sooner, to verify it, is fine). It returns the spool, its directory and the key that verifies it.
func Spool(t testing.TB) (sp *audit.Spool, dir string, pub ed25519.PublicKey) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	sp, err = audit.Open(dir, audit.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	return sp, dir, pub
}
