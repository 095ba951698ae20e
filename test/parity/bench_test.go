package parity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/filters/authz"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
	"github.com/fhirwall/fhirwall/policies"
)

// fakeIssuer serves an OIDC discovery document and a JWKS, and signs tokens like Keycloak's for patient-app.
func fakeIssuer(b testing.TB) (url string, sign func(scope string) string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks",
			"authorization_endpoint": srv.URL + "/auth", "token_endpoint": srv.URL + "/token"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	srv = httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		b.Fatal(err)
	}
	return srv.URL, func(scope string) string {
		raw, err := jwt.Signed(signer).Claims(map[string]any{"iss": srv.URL, "aud": "fhirwall", "sub": "u1", "azp": "patient-app",
			"typ": "Bearer", "scope": scope, "patient": "member-01", "jti": "j1", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}).Serialize()
		if err != nil {
			b.Fatal(err)
		}
		return raw
	}
}

// BenchmarkCheck measures one whole ext_authz decision as Envoy asks for it: a real RS256 token verified by
// internal/token (cached after the first request, as for every request after an app's first), the client
// registry, classification and the embedded Rego policy, for a narrowed EOB search. The audit write is a fake.
//
//	go test -run '^$' -bench BenchmarkCheck -benchmem ./test/parity
func BenchmarkCheck(b *testing.B) {
	s, req := checkServer(b)
	b.ReportAllocs()
	for b.Loop() {
		check(b, s, req)
	}
}

// BenchmarkCheckParallel is BenchmarkCheck from GOMAXPROCS goroutines at once, as Envoy's concurrent
// ext_authz streams call it: a lock on the hot path shows as ns/op that does not fall with -cpu.
//
//	go test -run '^$' -bench BenchmarkCheckParallel -cpu 1,2 -benchmem ./test/parity
func BenchmarkCheckParallel(b *testing.B) {
	s, req := checkServer(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			check(b, s, req)
		}
	})
}

// BenchmarkCheckMiss is BenchmarkCheck where every request differs from the ones before in one parameter
// value (identifier=<n>), so the decision cache never answers: the cost of a request shape seen for the first
// time, the cache's encoding and insertion included.
//
//	go test -run '^$' -bench BenchmarkCheckMiss -benchmem ./test/parity
func BenchmarkCheckMiss(b *testing.B) {
	s, req := checkServer(b)
	h := req.Attributes.Request.Http
	base := h.Path
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		h.Path = base + "&identifier=" + strconv.Itoa(i)
		check(b, s, req)
	}
}

func checkServer(b testing.TB) (*authz.Server, *authv3.CheckRequest) {
	iss, sign := fakeIssuer(b)
	verifier, err := token.NewVerifier([]token.IssuerConfig{{URL: iss, Audience: "fhirwall"}}, token.Options{Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	core := newCore(b, &fakeSink{})
	core.Tokens = verifier
	s := &authz.Server{Core: core, APIs: apis, Log: core.Log}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET",
			Path:    "/patient-access/fhir/ExplanationOfBenefit?_count=10&status=active",
			Headers: map[string]string{"authorization": "Bearer " + sign("openid launch/patient patient/*.rs")}}},
	}}
	return s, req
}

func check(b *testing.B, s *authz.Server, req *authv3.CheckRequest) {
	resp, err := s.Check(context.Background(), req)
	if err != nil || resp.GetOkResponse() == nil {
		b.Fatalf("not allowed: %v %v", resp, err)
	}
}

// recordingPolicy keeps the last input the core asked its policy about, for BenchmarkPolicyMiss.
type recordingPolicy struct {
	decision.Policy
	last any
}

func (p *recordingPolicy) Decide(ctx context.Context, input any) (policy.Result, error) {
	p.last = input
	return p.Policy.Decide(ctx, input)
}

// BenchmarkPolicyMiss is the Rego evaluation alone of BenchmarkCheckMiss's inputs (the engine, without the
// decision cache; with its memo, as fhirwall runs it): how much of a miss is the policy and how much the rest of
// the core.
//
//	go test -run '^$' -bench BenchmarkPolicyMiss -benchmem ./test/parity
func BenchmarkPolicyMiss(b *testing.B) {
	s, req := checkServer(b)
	cached := s.Core.Policy
	cfg, err := config.Load("../../config/fhirwall.yaml")
	if err != nil {
		b.Fatal(err)
	}
	engine, err := policy.New(context.Background(), policies.FS, cfg.PolicyData())
	if err != nil {
		b.Fatal(err)
	}
	rec := &recordingPolicy{Policy: cached}
	s.Core.Policy = rec
	check(b, s, req)
	in := rec.last.(map[string]any)
	request := maps.Clone(in["request"].(map[string]any))
	params := request["params"].([]any)
	in["request"] = request
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++ // as BenchmarkCheckMiss: one more parameter value never seen before
		request["params"] = append(params[:len(params):len(params)], map[string]any{"key": "identifier", "name": "identifier",
			"modifier": "", "target_type": "", "chain": []any{}, "values": []any{strconv.Itoa(i)}})
		if r, err := engine.Decide(context.Background(), in); err != nil || !r.Allow {
			b.Fatalf("%+v %v", r, err)
		}
	}
}
