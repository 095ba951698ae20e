package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Checkpoint is the entry the spool adds every few records and seconds, and when it starts and stops. It is
// chained like a Record and also signed: the signature covers the chain, the sequence number and the hash of
// the entry before it (the chain head), so rewriting any entry before a checkpoint — including recomputing
// every later hash — needs the signing key. Entries after the last checkpoint are covered by Head instead.
type Checkpoint struct {
	Schema    string    `json:"schema"`
	Kind      string    `json:"kind"` // KindCheckpoint
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Reason    string    `json:"reason"` // "periodic", "start", "stop"
	KeyID     string    `json:"key_id"`
	Signature string    `json:"signature"` // base64 ed25519 over CheckpointStatement
}

// Head is the spool's latest chain head, signed after every group commit and kept beside the segments
// (head.json). A log that ends before its head has lost its tail: the one tampering a hash chain alone cannot
// show. Head is not fsync'd, so after a crash it may lag the log (harmless); it is never ahead of it.
type Head struct {
	Chain     string    `json:"chain"`
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Signature string    `json:"signature"` // base64 ed25519 over HeadStatement
}

// CheckpointStatement is what a checkpoint at seq signs: the head it closes is seq-1 with hash prev.
func CheckpointStatement(chain string, seq uint64, prev string) []byte {
	return statement("fhirwall-audit-checkpoint/v1", chain, seq-1, prev)
}

// HeadStatement is what Head signs.
func HeadStatement(chain string, seq uint64, hash string) []byte {
	return statement("fhirwall-audit-head/v1", chain, seq, hash)
}

func statement(label, chain string, seq uint64, hash string) []byte {
	return []byte(label + "\n" + chain + "\n" + strconv.FormatUint(seq, 10) + "\n" + hash + "\n")
}

// KeyID names a public key in checkpoints: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// ErrSignature is returned when a checkpoint or head does not verify under the key.
var ErrSignature = errors.New("signature does not verify")

func sign(key ed25519.PrivateKey, msg []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
}

// Keys are the public keys a verifier accepts: the current signing key and those it replaced, so a chain that
// spans a key rotation verifies whole. Entries name their key by KeyID.
type Keys []ed25519.PublicKey

func (ks Keys) find(keyID string) ed25519.PublicKey {
	for _, k := range ks {
		if KeyID(k) == keyID {
			return k
		}
	}
	return nil
}

func (ks Keys) ids() []string {
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i] = KeyID(k)
	}
	return ids
}

func verifySig(keys Keys, keyID, sig string, msg []byte) error {
	pub := keys.find(keyID)
	if pub == nil {
		return fmt.Errorf("%w: signed by key %q, verifying with %q (add the older .pub for a rotated key)", ErrSignature, keyID, keys.ids())
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !ed25519.Verify(pub, msg, raw) {
		return ErrSignature
	}
	return nil
}

// Verify checks the head's signature.
func (h Head) Verify(keys ...ed25519.PublicKey) error {
	return verifySig(keys, h.KeyID, h.Signature, HeadStatement(h.Chain, h.Seq, h.Hash))
}

// GenerateKey writes a new ed25519 signing key (PKCS#8 PEM, mode 0600) to path and its public key (PKIX PEM)
// to path + ".pub". It refuses to overwrite an existing key: checkpoints already signed would stop verifying.
func GenerateKey(path string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	pder, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return os.WriteFile(path+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644)
}

// LoadSigningKey reads an ed25519 private key (PKCS#8 PEM, as GenerateKey writes it).
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	k, err := loadKey(path)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 private key (create one with `fhirwall audit keygen`)", path)
	}
	return priv, nil
}

// LoadVerifyKey reads an ed25519 public key, or the public half of a private key file.
func LoadVerifyKey(path string) (ed25519.PublicKey, error) {
	k, err := loadKey(path)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case ed25519.PublicKey:
		return k, nil
	case ed25519.PrivateKey:
		return k.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("%s: not an ed25519 key", path)
}

func loadKey(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	switch blk.Type {
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(blk.Bytes)
	}
	return nil, fmt.Errorf("%s: PEM block %q is neither PRIVATE KEY nor PUBLIC KEY", path, blk.Type)
}
