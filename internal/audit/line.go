package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The audit log is JSON lines. Every line is an entry (an access record, an admin entry or a checkpoint) that the spool sealed into
// the chain:
//
//	{"chain":"<id>","seq":<n>,"prev_hash":"<hex>", ...the entry's own members... ,"hash":"<hex>"}
//
// hash = SHA-256 of the line without its `,"hash":"…"` member, i.e. of the exact bytes the spool wrote, so a
// verifier never re-encodes JSON (no canonicalisation to get wrong). prev_hash binds each entry to the one
// before; the first entry of a chain has seq 1 and prev_hash GenesisHash. The same bytes are the Kafka message
// value, so the spool and the topic are verified by one walk.

// GenesisHash is the prev_hash of a chain's first entry.
var GenesisHash = hex.EncodeToString(make([]byte, sha256.Size))

const hashHexLen = 2 * sha256.Size

// sealSuffixLen is len(`,"hash":"` + 64 hex + `"}`).
const sealSuffixLen = len(`,"hash":"`) + hashHexLen + len(`"}`)

// ErrMalformed is returned for a line that is not a sealed entry; ErrHash for one whose content does not match
// its hash (modified after it was written).
var (
	ErrMalformed = errors.New("not a sealed audit entry")
	ErrHash      = errors.New("content does not match its hash")
)

// seal prefixes body (a JSON object without chain members) with chain, seq and prev_hash and appends its hash.
// It returns the sealed line (no newline) and the hash.
func seal(body []byte, chain string, seq uint64, prev string) ([]byte, string, error) {
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, "", fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	line := make([]byte, 0, len(body)+len(chain)+hashHexLen*2+96)
	line = append(line, `{"chain":`...)
	line = strconv.AppendQuote(line, chain)
	line = append(line, `,"seq":`...)
	line = strconv.AppendUint(line, seq, 10)
	line = append(line, `,"prev_hash":"`...)
	line = append(line, prev...)
	line = append(line, '"')
	if len(body) > 2 { // a non-empty object: its members follow ours
		line = append(line, ',')
		line = append(line, body[1:len(body)-1]...)
	}
	sum := sha256.Sum256(append(line, '}'))
	h := hex.EncodeToString(sum[:])
	line = append(line, `,"hash":"`...)
	line = append(line, h...)
	line = append(line, `"}`...)
	return line, h, nil
}

// Entry is what the chain needs to know of one sealed line.
type Entry struct {
	Kind     string    `json:"kind"`
	ID       string    `json:"id"`
	Chain    string    `json:"chain"`
	Seq      uint64    `json:"seq"`
	PrevHash string    `json:"prev_hash"`
	Hash     string    `json:"hash"`
	Time     time.Time `json:"time"`
	// Partition key: the first patient, else the client, else the admin entry's target.
	Patients []string `json:"patients"`
	ClientID string   `json:"client_id"`
	Target   string   `json:"target"` // KindAdmin only
	// Checkpoint members (KindCheckpoint only).
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"`
}

// Key is the Kafka partition key that keeps one patient's entries in order: the first patient, else the
// client, else the app an admin entry changed (one app's history stays in order), else the chain
// (checkpoints).
func (e Entry) Key() string {
	switch {
	case len(e.Patients) > 0:
		return e.Patients[0]
	case e.ClientID != "":
		return e.ClientID
	case e.Target != "":
		return e.Target
	}
	return e.Chain
}

// ParseLine checks a sealed line's hash and returns its entry. It does not check the chain (see Walker).
func ParseLine(line []byte) (Entry, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	n := len(line)
	if n < sealSuffixLen+2 || !bytes.HasPrefix(line, []byte(`{"chain":`)) ||
		!bytes.HasPrefix(line[n-sealSuffixLen:], []byte(`,"hash":"`)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return Entry{}, ErrMalformed
	}
	claimed := line[n-sealSuffixLen+len(`,"hash":"`) : n-2]
	unsealed := make([]byte, 0, n-sealSuffixLen+1)
	unsealed = append(unsealed, line[:n-sealSuffixLen]...)
	unsealed = append(unsealed, '}')
	sum := sha256.Sum256(unsealed)
	var want [hashHexLen]byte
	hex.Encode(want[:], sum[:])
	if !bytes.Equal(want[:], claimed) {
		return Entry{}, ErrHash
	}
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// A second "hash" member earlier in the line would win in e.Hash; the sealed one is authoritative.
	if e.Hash != string(claimed) || e.Seq == 0 || e.Chain == "" || len(e.PrevHash) != hashHexLen {
		return Entry{}, fmt.Errorf("%w: chain members missing or altered", ErrMalformed)
	}
	if e.Kind != KindAccess && e.Kind != KindCheckpoint && e.Kind != KindAdmin {
		return Entry{}, fmt.Errorf("%w: unknown kind %q", ErrMalformed, e.Kind)
	}
	return e, nil
}
