package dcr

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// statementAlgs are the signature algorithms a software statement may use: asymmetric only (a registrar's
// statement is checked with its public key; HS* would make every holder of the key a registrar), never none.
var statementAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384,
	jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// clockSkew is how far a statement's times may disagree with the server's clock.
const clockSkew = time.Minute

// registrars are the public keys of the trusted software statement issuers (RFC 7591 §2.3).
type registrars struct {
	keys []jose.JSONWebKey
}

// parseRegistrars reads each document as a JSON Web Key Set of public signing keys. A private or symmetric
// key is refused: the file would be a secret, and a symmetric key would let anyone holding it pose as the
// registrar.
func parseRegistrars(docs [][]byte) (registrars, error) {
	var r registrars
	var errs []error
	for i, doc := range docs {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(doc, &set); err != nil {
			errs = append(errs, fmt.Errorf("trusted registrar %d: not a JSON Web Key Set: %w", i, err))
			continue
		}
		if len(set.Keys) == 0 {
			errs = append(errs, fmt.Errorf("trusted registrar %d: no keys", i))
		}
		for j, k := range set.Keys {
			switch {
			case !k.Valid():
				errs = append(errs, fmt.Errorf("trusted registrar %d key %d: not a valid key", i, j))
			case !k.IsPublic():
				errs = append(errs, fmt.Errorf("trusted registrar %d key %d (kid %q): a private or symmetric key; configure the registrar's public keys only", i, j, k.KeyID))
			case k.Use != "" && k.Use != "sig":
				errs = append(errs, fmt.Errorf("trusted registrar %d key %d (kid %q): use %q, want sig", i, j, k.KeyID, k.Use))
			default:
				r.keys = append(r.keys, k)
			}
		}
	}
	return r, errors.Join(errs...)
}

// verify checks a software statement (RFC 7591 §2.3: a JWT, signed, in compact serialization) and returns
// the client metadata it asserts. A statement that is not a well-formed signed JWT, or whose times say it
// must not be used now, is invalid_software_statement; one no trusted registrar's key verifies is
// unapproved_software_statement.
func (r registrars) verify(raw string, now time.Time) (map[string]json.RawMessage, *Refusal) {
	if strings.Count(raw, ".") != 2 {
		return nil, refuse(InvalidSoftwareStatement, "software_statement: want a signed JWT in compact serialization")
	}
	jws, err := jose.ParseSignedCompact(raw, statementAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, refuse(InvalidSoftwareStatement, "software_statement: want a JWT signed with one of %v", statementAlgs)
	}
	hdr := jws.Signatures[0].Header
	var payload []byte
	for _, k := range r.keys {
		if (hdr.KeyID != "" && k.KeyID != hdr.KeyID) || (k.Algorithm != "" && k.Algorithm != hdr.Algorithm) {
			continue
		}
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, refuse(UnapprovedSoftwareStatement, "software_statement: not signed by a registrar this server trusts")
	}
	claims, err := parseObject(payload)
	if err != nil {
		return nil, refuse(InvalidSoftwareStatement, "software_statement: the claims are not one JSON object: %v", err)
	}
	var iss string
	if raw, ok := claims["iss"]; !ok || json.Unmarshal(raw, &iss) != nil || iss == "" {
		return nil, refuse(InvalidSoftwareStatement, "software_statement: no iss naming the registrar")
	}
	for _, c := range []struct {
		name string
		bad  func(t time.Time) bool
		why  string
	}{
		{"exp", func(t time.Time) bool { return !now.Before(t.Add(clockSkew)) }, "expired"},
		{"nbf", func(t time.Time) bool { return now.Add(clockSkew).Before(t) }, "not valid yet"},
		{"iat", func(t time.Time) bool { return now.Add(clockSkew).Before(t) }, "issued in the future"},
	} {
		raw, ok := claims[c.name]
		if !ok {
			continue
		}
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f < 0 || f > 1e11 {
			return nil, refuse(InvalidSoftwareStatement, "software_statement: %s: want a NumericDate", c.name)
		}
		if c.bad(time.Unix(int64(f), 0)) {
			return nil, refuse(InvalidSoftwareStatement, "software_statement: %s", c.why)
		}
	}
	if _, ok := claims["software_statement"]; ok {
		return nil, refuse(InvalidSoftwareStatement, "software_statement: a statement does not hold another")
	}
	for name := range claims {
		if slices.Contains(jwtClaims, name) {
			delete(claims, name)
		}
	}
	return claims, nil
}
