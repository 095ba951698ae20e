package portal

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/seal"
)

// FuzzParseDocs: any CapabilityStatement or discovery document either parses or is refused, never panics.
func FuzzParseDocs(f *testing.F) {
	f.Add([]byte(`{"resourceType":"CapabilityStatement","rest":[{"resource":[{"type":"Patient","interaction":[{"code":"read"}]}]}]}`), []byte(`{"scopes_supported":["openid"]}`))
	f.Add([]byte(`{"resourceType":"Patient"}`), []byte(`[]`))
	f.Add([]byte(`{"rest":null}`), []byte(`{"capabilities":[1]}`))
	f.Fuzz(func(t *testing.T, capability, smart []byte) {
		_, _ = parseDocs("api", capability, smart)
	})
}

// FuzzSessionCookie: no cookie value opens without the key, and none panics the opener.
func FuzzSessionCookie(f *testing.F) {
	s, _ := newSealer(bytes.Repeat([]byte{1}, 32))
	good, _ := s.seal(sessionCookie, session{Subject: "a", CSRF: "b"})
	f.Add(good)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		var out session
		// Only the seeded value was ever sealed with this key: anything else that opens is a forgery.
		if err := s.open(sessionCookie, v, &out); err == nil && (out.Subject != "a" || out.CSRF != "b") {
			t.Fatalf("a value the portal did not seal opened: %q", v)
		}
	})
}

// FuzzSafeReturn: a return path always stays on the portal.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/apps", "//evil", "https://e", "/\\e", "/a?b=//c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := safeReturn(p)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") || strings.ContainsAny(got, "\r\n") {
			t.Fatalf("safeReturn(%q) = %q leaves the portal", p, got)
		}
	})
}

// FuzzSessionKey: a key file gives a keyring that seals and opens a cookie, or is refused.
func FuzzSessionKey(f *testing.F) {
	f.Add([]byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := seal.ParseKeyring(b)
		if err != nil {
			return
		}
		s := &sealer{keys: k}
		v, err := s.seal(sessionCookie, session{Subject: "a"})
		var out session
		if err != nil || s.open(sessionCookie, v, &out) != nil || out.Subject != "a" {
			t.Fatalf("a parsed key file cannot seal and open a cookie: %v", err)
		}
	})
}
