package selftest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// clientAssertionType is RFC 7523's private_key_jwt assertion type (SMART Backend Services §Request).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// readTokenFile reads a bearer token from a file (surrounding space dropped).
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \n\r\t") {
		return "", fmt.Errorf("%s: want one access token and nothing else", path)
	}
	return tok, nil
}

// loadSigner reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC).
func loadSigner(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s: not an RSA or EC private key", path)
}

// assertion signs a client assertion for tokenEndpoint (SMART Backend Services: RS384 or ES384, a jti, exp
// at most five minutes away, aud the token endpoint).
func assertion(clientID, tokenEndpoint, kid string, key crypto.Signer, now time.Time) (string, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		alg = jose.RS384
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P384() {
			return "", errors.New("an EC key for Backend Services must be P-384 (ES384)")
		}
		alg = jose.ES384
	default:
		return "", fmt.Errorf("key type %T: want RSA or EC P-384", k)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", err
	}
	jti := make([]byte, 16)
	rand.Read(jti)
	return jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: jwt.Audience{tokenEndpoint}, ID: hex.EncodeToString(jti),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)),
	}).Serialize()
}

// backendToken runs client_credentials at tokenEndpoint with a private_key_jwt assertion. The IdP's error
// body is quoted (it names no secret); the token itself never leaves this function but in the return value.
func backendToken(ctx context.Context, hc *http.Client, tokenEndpoint string, cr Credentials, key crypto.Signer, scopes []string, now time.Time) (string, error) {
	a, err := assertion(cr.ClientID, tokenEndpoint, cr.Kid, key, now)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {strings.Join(scopes, " ")},
		"client_assertion_type": {clientAssertionType}, "client_assertion": {a}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return "", fmt.Errorf("token endpoint answered %d %s %s for client %s", resp.StatusCode, tr.Error, tr.Description, cr.ClientID)
	}
	return tr.AccessToken, nil
}

// expiredToken is a JWT with payload's claims (base64url, as in the member's token) but exp and iat an hour
// ago, signed by a key made here that no issuer knows: refused both as expired and as unverifiable.
func expiredToken(payload string, now time.Time) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", fmt.Errorf("the member's token payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return "", fmt.Errorf("the member's token payload: %w", err)
	}
	claims["exp"] = now.Add(-time.Hour).Unix()
	claims["iat"] = now.Add(-2 * time.Hour).Unix()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "selftest-foreign"))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// tokenEndpoint is the token_endpoint of api's SMART configuration (SMART Backend Services §Discovery).
func (r *runner) tokenEndpoint(ctx context.Context, api string) (string, error) {
	ans, err := r.send(ctx, "token endpoint discovery", http.MethodGet, api+"/.well-known/smart-configuration", "", nil, nil)
	if err != nil {
		return "", err
	}
	var sc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if ans.status != 200 || json.Unmarshal(ans.body, &sc) != nil || sc.TokenEndpoint == "" {
		return "", fmt.Errorf("%s/.well-known/smart-configuration: %d, no token_endpoint", api, ans.status)
	}
	u, err := url.Parse(sc.TokenEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("token_endpoint %q is not an http(s) URL", sc.TokenEndpoint)
	}
	return sc.TokenEndpoint, nil
}
