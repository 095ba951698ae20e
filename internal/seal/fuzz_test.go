package seal

import (
	"errors"
	"testing"
)

// FuzzOpen: whatever arrives, Open either gives back what was sealed or ErrOpen; it never panics.
func FuzzOpen(f *testing.F) {
	k := ring(f, testKey(7), testKey(8))
	good, _ := k.Seal("p", []byte("value"))
	f.Add("p", good)
	f.Add("p", good[:len(good)-1])
	f.Add("q", good)
	f.Add("p", "00000000.")
	f.Add("p", "")
	f.Fuzz(func(t *testing.T, purpose, sealed string) {
		got, err := k.Open(purpose, sealed)
		if err != nil {
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		// Each fuzz worker seals its own seed (fresh nonce), so only what was sealed can open: the plaintext
		// "value" for purpose "p". Anything else would be a forgery.
		if string(got) != "value" || purpose != "p" {
			t.Fatalf("forged value opened: %q → %q", sealed, got)
		}
	})
}

// FuzzParseKeyring: a key file yields a usable ring or an error, never a panic.
func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte("# c\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"))
	f.Add(testKey(1))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKeyring(b)
		if err != nil {
			return
		}
		s, err := k.Seal("p", b)
		if err != nil {
			return
		}
		if _, err := k.Open("p", s); err != nil {
			t.Fatalf("a parsed ring cannot open its own value: %v", err)
		}
	})
}
