package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrUnverified is returned (wrapped) by Verify for every envelope it refuses.
var ErrUnverified = errors.New("evidence: signed matrix does not verify")

type envelope struct {
	Matrix    json.RawMessage `json:"matrix"`
	KeyID     string          `json:"key_id"`
	Signature string          `json:"signature"`
}

// encodeEnvelope writes the one byte layout Sign produces; Verify re-encodes what it parsed and compares, so
// a change anywhere in the envelope, even in bytes JSON would ignore, is refused.
func encodeEnvelope(matrix []byte, kid, sig string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"matrix":`)
	b.Write(matrix)
	k, _ := json.Marshal(kid)
	b.WriteString(`,"key_id":`)
	b.Write(k)
	s, _ := json.Marshal(sig)
	b.WriteString(`,"signature":`)
	b.Write(s)
	b.WriteString("}\n")
	return b.Bytes()
}

// signedLabel starts every signed statement, as the audit trail's labels start its checkpoints and heads
// ("fhirwall-audit-checkpoint/v1"): the audit key signs both, and a signature made for one kind of statement
// must never verify as another.
const signedLabel = "fhirwall-evidence-matrix/v1\n"

// statement is what Sign signs for these matrix bytes.
func statement(matrix []byte) []byte {
	return append([]byte(signedLabel), matrix...)
}

// keyID names a public key as audit.KeyID does (the first 8 bytes of its SHA-256, in hex), so evidence and
// audit checkpoints name the audit key alike. It is not imported: the audit package's own e2e test proves
// requirements, and importing it here would make that an import cycle. TestKeyIDIsTheAuditKeyID keeps them equal.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign wraps the matrix's JSON in an envelope signed with ed25519 over signedLabel and those exact bytes, named by
// audit.KeyID of the public key (the audit key signs evidence too).
func Sign(m Matrix, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("evidence: signing key has %d bytes, want an ed25519 private key of %d", len(key), ed25519.PrivateKeySize)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("evidence: encoding matrix: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, statement(mb)))
	return encodeEnvelope(mb, keyID(pub), sig), nil
}

// Verify checks an envelope from Sign against the trusted keys and returns the matrix it carries. It refuses
// any changed byte, an unknown key and a signature that does not verify.
func Verify(env []byte, keys []ed25519.PublicKey) (Matrix, error) {
	var e envelope
	dec := json.NewDecoder(bytes.NewReader(env))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Matrix{}, fmt.Errorf("%w: not an evidence envelope: %v", ErrUnverified, err)
	}
	if !bytes.Equal(encodeEnvelope(e.Matrix, e.KeyID, e.Signature), env) {
		return Matrix{}, fmt.Errorf("%w: the envelope was changed outside the signed matrix", ErrUnverified)
	}
	var pub ed25519.PublicKey
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && keyID(k) == e.KeyID {
			pub = k
			break
		}
	}
	if pub == nil {
		return Matrix{}, fmt.Errorf("%w: key %q is not one of the %d trusted keys", ErrUnverified, e.KeyID, len(keys))
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(e.Signature)
	if err != nil || !ed25519.Verify(pub, statement(e.Matrix), sig) {
		return Matrix{}, fmt.Errorf("%w: the signature does not match the matrix under key %s", ErrUnverified, e.KeyID)
	}
	var m Matrix
	if err := json.Unmarshal(e.Matrix, &m); err != nil {
		return Matrix{}, fmt.Errorf("%w: signed matrix does not decode: %v", ErrUnverified, err)
	}
	return m, nil
}
