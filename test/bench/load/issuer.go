package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// issuer is the benchmark's token issuer: OIDC discovery and a JWKS on loopback, and an RS256 access token
// for member-01 as Keycloak would issue it (fhirwall verifies it exactly as in production; cached after the
// first request, as in production).
type issuer struct {
	url  string
	key  *rsa.PrivateKey
	jwks []byte
}

const audience = "fhirwall"

// startIssuer serves the issuer on addr with the RSA key kept in keyFile (made on the first run), so the JWKS
// a peer was started with stays valid across runs.
func startIssuer(addr, keyFile string) (*issuer, error) {
	key, err := loadOrMakeKey(keyFile)
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + addr + "/bench", key: key}
	is.jwks, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench-1", Algorithm: "RS256", Use: "sig"}}})
	disc, _ := json.Marshal(map[string]any{
		"issuer": is.url, "jwks_uri": is.url + "/jwks", "authorization_endpoint": is.url + "/auth",
		"token_endpoint": is.url + "/token", "response_types_supported": []string{"code"},
		"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		"grant_types_supported":                 []string{"authorization_code", "client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bench/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(disc)
	})
	mux.HandleFunc("GET /bench/jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(is.jwks)
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	go http.Serve(l, mux)
	return is, nil
}

// token mints member-01's access token, valid for the whole run.
func (is *issuer) token() (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "bench-1"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(sig).Claims(jwt.Claims{Issuer: is.url, Subject: "member01-sub", Audience: jwt.Audience{audience},
		Expiry: jwt.NewNumericDate(now.Add(2 * time.Hour)), IssuedAt: jwt.NewNumericDate(now), ID: "bench-jti"}).
		Claims(map[string]any{"client_id": "patient-app", "patient": "member-01",
			"scope": "openid fhirUser launch/patient patient/ExplanationOfBenefit.rs patient/Patient.rs patient/Coverage.rs"}).Serialize()
}

func loadOrMakeKey(path string) (*rsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			return x509.ParsePKCS1PrivateKey(blk.Bytes)
		}
		return nil, fmt.Errorf("%s: not a PEM key (delete it to make a new one)", path)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return key, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
}
