package portal

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fhirwall/fhirwall/internal/seal"
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

// sealer seals and opens cookie values with the portal's keyring (portal.session_key_file, seal.LoadKeyring:
// the first key seals, every key opens, so the key can rotate); the cookie's name is the additional data, so
// a value sealed for one cookie never opens as another.
type sealer struct{ keys *seal.Keyring }

// newSealer is a sealer with one key (Options.SessionKey).
func newSealer(key []byte) (*sealer, error) {
	k, err := seal.NewKeyring(key)
	if err != nil {
		return nil, fmt.Errorf("portal: session key: %w", err)
	}
	return &sealer{keys: k}, nil
}

func (s *sealer) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	out, err := s.keys.Seal(name, plain)
	if err != nil {
		return "", err
	}
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
	plain, err := s.keys.Open(name, value)
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
