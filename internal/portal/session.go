package portal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// Cookie names. __Host-: Secure, Path=/, no Domain, so no other host and no plain-HTTP page can set them.
const (
	sessionCookie = "__Host-fhirwall-portal"
	loginCookie   = "__Host-fhirwall-login"
	sessionTTL    = time.Hour
	loginTTL      = 10 * time.Minute
	maxCookie     = 3800 // a browser keeps 4096 bytes per cookie, name and attributes included
)

// session is who is signed in; it travels sealed in the session cookie, so any replica can read it.
type session struct {
	Subject  string    `json:"sub"`
	Username string    `json:"user"`
	Roles    []string  `json:"roles"`
	Patient  string    `json:"patient,omitempty"`
	CSRF     string    `json:"csrf"`
	Expires  time.Time `json:"exp"`
	// IDToken is the hint sign-out gives the issuer, so it ends its session without asking again (OIDC
	// RP-Initiated Logout §2); left out when it would not fit in the cookie.
	IDToken string `json:"idt,omitempty"`
}

// pendingLogin is an authorization request in flight (state, nonce, PKCE verifier), sealed in its own
// short-lived cookie.
type pendingLogin struct {
	State    string    `json:"state"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Return   string    `json:"return"`
	Expires  time.Time `json:"exp"`
}

// sealer seals and opens cookie values with AES-256-GCM; the cookie's name is the additional data, so a
// value sealed for one cookie never opens as another.
type sealer struct{ aead cipher.AEAD }

// ErrSessionKey is a session key that is not 32 bytes.
var ErrSessionKey = errors.New("portal: the session key must be 32 bytes (raw, base64 or hex)")

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, ErrSessionKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// LoadSessionKey reads portal.session_key_file: 32 raw bytes, or their standard base64 or hex.
func LoadSessionKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("portal: session key: %w", err)
	}
	return parseSessionKey(b)
}

func parseSessionKey(b []byte) ([]byte, error) {
	if len(b) == 32 {
		return b, nil
	}
	s := strings.TrimSpace(string(b))
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := hex.DecodeString(s); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, ErrSessionKey
}

func (s *sealer) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(name)))
	if len(out) > maxCookie {
		return "", fmt.Errorf("portal: cookie %s would be %d bytes", name, len(out))
	}
	return out, nil
}

// open decrypts a cookie value into v; any tampering, a value of another cookie or another key fails.
func (s *sealer) open(name, value string, v any) error {
	if len(value) > maxCookie {
		return errors.New("cookie too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return err
	}
	n := s.aead.NonceSize()
	if len(raw) < n+s.aead.Overhead() {
		return errors.New("cookie too short")
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

func (s *sealer) setCookie(w http.ResponseWriter, name string, v any, ttl time.Duration) error {
	val, err := s.seal(name, v)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: val, Path: "/", MaxAge: int(ttl.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return nil
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
