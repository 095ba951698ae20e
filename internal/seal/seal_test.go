package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func ring(t testing.TB, keys ...[]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealedValueOpensForItsPurposeOnly(t *testing.T) {
	k := ring(t, testKey(1))
	s, err := k.Seal("decision", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open("decision", s); err != nil || string(got) != "hello" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open("cookie", s); !errors.Is(err, ErrOpen) {
		t.Fatalf("another purpose opened it: %v", err)
	}
	if !strings.HasPrefix(s, k.SealingKeyID()+".") || len(k.SealingKeyID()) != 8 {
		t.Fatalf("sealed value %q does not start with the key id %q", s, k.SealingKeyID())
	}
}

func TestRotationOldKeyOpensNewKeySeals(t *testing.T) {
	old := ring(t, testKey(1))
	rotated := ring(t, testKey(2), testKey(1))
	byOld, _ := old.Seal("p", []byte("before"))
	if got, err := rotated.Open("p", byOld); err != nil || string(got) != "before" {
		t.Fatalf("a value sealed with the old key does not open after rotation: %q %v", got, err)
	}
	byNew, _ := rotated.Seal("p", []byte("after"))
	if _, err := old.Open("p", byNew); !errors.Is(err, ErrOpen) {
		t.Fatal("the new key did not seal: a ring without it opened the value")
	}
	if rotated.SealingKeyID() == old.SealingKeyID() {
		t.Fatal("the first key must seal")
	}
	// The old key removed: its values no longer open.
	if _, err := ring(t, testKey(2)).Open("p", byOld); !errors.Is(err, ErrOpen) {
		t.Fatal("a removed key still opens")
	}
}

func TestEveryTamperedByteFailsToOpen(t *testing.T) {
	k := ring(t, testKey(3))
	s, _ := k.Seal("p", []byte(`{"allow":true}`))
	for i := range len(s) {
		for _, c := range []byte{'A', '_', '0', '.'} {
			if s[i] == c {
				continue
			}
			b := []byte(s)
			b[i] = c
			if got, err := k.Open("p", string(b)); err == nil {
				// base64 of the last character may carry unused bits; Strict decoding refuses those.
				t.Fatalf("byte %d changed to %q opened: %q", i, c, got)
			}
		}
	}
	for _, bad := range []string{"", ".", s[:9], s + "A", "zzzzzzzz." + s[9:], s[:8] + s[9:], strings.Repeat("A", MaxSealed+1)} {
		if _, err := k.Open("p", bad); !errors.Is(err, ErrOpen) {
			t.Fatalf("%.40q opened or gave another error: %v", bad, err)
		}
	}
}

func TestParseKeyringFormats(t *testing.T) {
	a, b := testKey(4), testKey(5)
	cases := map[string][]byte{
		"raw 32 bytes":          a,
		"base64 line":           []byte(base64.StdEncoding.EncodeToString(a) + "\n"),
		"hex line":              []byte(hex.EncodeToString(a)),
		"two keys and comments": []byte("# new key first\n" + base64.StdEncoding.EncodeToString(a) + "\n\n# old\n" + hex.EncodeToString(b) + "\n"),
	}
	want := ring(t, a)
	for name, in := range cases {
		k, err := ParseKeyring(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k.SealingKeyID() != want.SealingKeyID() {
			t.Fatalf("%s: the first key does not seal", name)
		}
	}
	k, _ := ParseKeyring(cases["two keys and comments"])
	s, _ := ring(t, b).Seal("p", []byte("x"))
	if _, err := k.Open("p", s); err != nil {
		t.Fatal("the second key of the file does not open")
	}
}

func TestBadKeyFilesSayTheFix(t *testing.T) {
	for name, in := range map[string]string{
		"empty":         "",
		"only comments": "# nothing\n\n",
		"short base64":  base64.StdEncoding.EncodeToString(testKey(1)[:16]),
		"not a key":     "password123\n",
		"duplicate":     hex.EncodeToString(testKey(1)) + "\n" + base64.StdEncoding.EncodeToString(testKey(1)),
	} {
		_, err := ParseKeyring([]byte(in))
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if name != "duplicate" && !strings.Contains(err.Error(), "head -c 32 /dev/urandom | base64") {
			t.Fatalf("%s: error does not say the fix: %v", name, err)
		}
	}
	dir := t.TempDir()
	if _, err := LoadKeyring(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file loaded")
	}
	p := filepath.Join(dir, "k")
	secret := base64.StdEncoding.EncodeToString(testKey(9)[:31])
	_ = os.WriteFile(p, []byte(secret), 0o600)
	_, err := LoadKeyring(p)
	if err == nil || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), secret) {
		t.Fatalf("error must name the file and never the key: %v", err)
	}
}
