// Package seal seals small values with AES-256-GCM under a keyring that every replica shares, so a value one
// replica made (a decision carried through Envoy, a portal cookie) opens on any other.
package seal

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the length of one key: AES-256.
const KeySize = 32

// MaxSealed bounds what Seal makes and Open reads: a sealed value is a cookie or an Envoy metadata field,
// never megabytes (a decision on a request with a 60 KiB URL, Envoy's header limit, seals to about 350 KiB).
// Larger input is refused before any work is done on it.
const MaxSealed = 1 << 20

// keyIDLen is the length of a key id, in hex characters.
const keyIDLen = 8

// ErrOpen is every failure of Open: unknown key, tampering, wrong purpose, bad encoding, oversize. It says
// nothing more, so an attacker learns nothing from which check failed.
var ErrOpen = errors.New("seal: value does not open")

// ErrKeyFile is a key file that holds no usable key, or a line that is not one.
var ErrKeyFile = errors.New("want 32 random bytes per line, base64 or hex: head -c 32 /dev/urandom | base64")

// Keyring is a list of AES-256-GCM keys. The first seals; every one opens, so a key can be rotated without
// losing values sealed under the one before: put the new key first, keep the old one while values it sealed
// may still be around, then remove it. A Keyring is immutable and safe for concurrent use.
type Keyring struct {
	keys []key
}

type key struct {
	id   string
	aead cipher.AEAD
}

// NewKeyring builds a keyring from raw 32-byte keys; the first seals.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("seal: no key: %w", ErrKeyFile)
	}
	k := &Keyring{}
	seen := map[string]bool{}
	for i, raw := range keys {
		if len(raw) != KeySize {
			return nil, fmt.Errorf("seal: key %d is %d bytes: %w", i+1, len(raw), ErrKeyFile)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		id := hex.EncodeToString(sum[:])[:keyIDLen]
		if seen[id] {
			return nil, fmt.Errorf("seal: key %d is listed twice (key id %s); list each key once", i+1, id)
		}
		seen[id] = true
		k.keys = append(k.keys, key{id: id, aead: aead})
	}
	return k, nil
}

// LoadKeyring reads a key file (ParseKeyring). The error names the file, never a key.
func LoadKeyring(path string) (*Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	k, err := ParseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseKeyring reads keys, one per line, each 32 bytes as standard base64 or hex; blank lines and lines
// starting with # are ignored. A file of exactly 32 bytes is one raw key (what the
// portal's session_key_file has always accepted).
func ParseKeyring(b []byte) (*Keyring, error) {
	if len(b) == KeySize { // no base64 (44) or hex (64) line is 32 bytes long
		return NewKeyring(bytes.Clone(b))
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("seal: %w", ErrKeyFile)
	}
	return NewKeyring(keys...)
}

func decodeKey(s string) ([]byte, error) {
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := hex.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, ErrKeyFile
}

// SealingKeyID is the id of the key that seals (for logs: it names a key without revealing it).
func (k *Keyring) SealingKeyID() string { return k.keys[0].id }

// Seal encrypts plain under the first key. purpose is the additional data: a value sealed for one purpose
// never opens as another. The result is "<keyid>.<base64url(nonce|ciphertext)>", safe in a header or cookie.
func (k *Keyring) Seal(purpose string, plain []byte) (string, error) {
	sk := k.keys[0]
	nonce := make([]byte, sk.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := sk.id + "." + base64.RawURLEncoding.EncodeToString(sk.aead.Seal(nonce, nonce, plain, []byte(purpose)))
	if len(out) > MaxSealed {
		return "", fmt.Errorf("seal: sealed value would be %d bytes, above %d", len(out), MaxSealed)
	}
	return out, nil
}

// Open decrypts a value Seal made for purpose under any key of the ring. Every failure is ErrOpen.
func (k *Keyring) Open(purpose, sealed string) ([]byte, error) {
	if len(sealed) > MaxSealed {
		return nil, ErrOpen
	}
	id, body, ok := strings.Cut(sealed, ".")
	if !ok || len(id) != keyIDLen {
		return nil, ErrOpen
	}
	for _, ok := range k.keys {
		if ok.id != id {
			continue
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
		if err != nil {
			return nil, ErrOpen
		}
		n := ok.aead.NonceSize()
		if len(raw) < n+ok.aead.Overhead() {
			return nil, ErrOpen
		}
		plain, err := ok.aead.Open(nil, raw[:n], raw[n:], []byte(purpose))
		if err != nil {
			return nil, ErrOpen
		}
		return plain, nil
	}
	return nil, ErrOpen
}
