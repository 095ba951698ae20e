// Package authz is Envoy's ext_authz face of fhirwall: it translates a gRPC CheckRequest into the decision
// core's Input and the core's Decision back into a CheckResponse. No decisions are made here.
package authz

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/tracing"
)

// DecisionHeader carries the decision id from ext_authz to ext_proc (ext_authz overwrites whatever a client
// sent), and back to the client on every answer so a caller can quote it and an auditor find the record.
// ext_proc checks it names the decision sealed in the metadata.
const DecisionHeader = "x-fhirwall-decision-id"

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	Core *decision.Core
	APIs []decision.API
	Log  *slog.Logger
	// Tracer joins each check to the trace of Envoy's request (the call's metadata carries the trace
	// context); nil or off: no spans.
	Tracer *tracing.Tracer
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// Check decides one request.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ctx, span := s.Tracer.StartServer(s.Tracer.FromEnvoy(ctx), tracing.SpanExtAuthz)
	defer span.End()
	h := req.GetAttributes().GetRequest().GetHttp()
	rawPath, rawQuery, _ := strings.Cut(h.GetPath(), "?")
	headers := h.GetHeaders()
	in := decision.Input{
		Mode:     decision.ModeEnvoy,
		Method:   h.GetMethod(),
		RawQuery: rawQuery,
		// Envoy gives header names in lower case and joins repeated headers with ",".
		Header: func(name string) []string {
			if v, ok := headers[strings.ToLower(name)]; ok {
				return []string{v}
			}
			return nil
		},
		// with_request_body.pack_as_bytes: the body arrives unmodified in raw_body.
		Body:      h.GetRawBody(),
		SourceIP:  req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(),
		RequestID: headers["x-request-id"],
	}
	if a, ok := headers["authorization"]; ok {
		// Envoy joins repeated headers with ","; a bearer token never contains one, so a comma means two
		// headers and is refused by the token parser.
		in.Authorization = []string{a}
	}
	api, rest, routeErr := decision.Route(s.APIs, rawPath)
	limit := fhir.MaxBodyBytes
	if routeErr == nil {
		limit = api.BodyLimit(rest)
	}
	if bodyTooLarge(h.GetSize(), len(in.Body), headers, limit) {
		// Envoy answers 413 itself above max_request_bytes on HTTP/1.1, but over HTTP/2 it has been seen to
		// ask about a truncated body instead; the limit holds here too, as in the standalone proxy.
		in.Path = rawPath
		return s.deny(ctx, s.Core.Refuse(in, outcome.TooLarge, "request_too_large")), nil
	}
	if routeErr != nil {
		in.Path = rawPath
		return s.deny(ctx, s.Core.Refuse(in, outcome.NotFound, "no_api")), nil
	}
	in.API, in.Path, in.BodyLimit = api.Name, rest, limit
	d := s.Core.Decide(ctx, in)
	if !d.Allow {
		return s.deny(ctx, d), nil
	}
	// The decision travels with the request to ext_proc, which may run on another replica (Invariant 4).
	sealed, err := s.Core.Seal(d)
	if err != nil {
		s.Log.Error("decision could not be sealed; refusing", "decision_id", d.ID, "error", err)
		return s.deny(ctx, s.Core.Refuse(in, outcome.Internal, "decision_not_sealed")), nil
	}
	ok := &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{setHeader(DecisionHeader, d.ID)}}
	ok.Headers = append(ok.Headers, rateLimitHeaders(d)...)
	// Invariant 3: conditional headers are judged by the core after enforcement, never by the FHIR server.
	for _, name := range decision.ConditionalHeaders {
		ok.HeadersToRemove = append(ok.HeadersToRemove, strings.ToLower(name))
	}
	if a := d.UpstreamAccept; a != "" {
		ok.Headers = append(ok.Headers, setHeader("accept", a))
	}
	if d.UpstreamQuery != rawQuery {
		set, remove, err := queryMutations(rawQuery, d.UpstreamQuery)
		if err != nil {
			s.Log.Error("narrowed query cannot be expressed to Envoy; refusing", "decision_id", d.ID, "error", err)
			return s.deny(ctx, s.Core.Refuse(in, outcome.Internal, "narrowing_not_expressible")), nil
		}
		ok.QueryParametersToSet, ok.QueryParametersToRemove = set, remove
	}
	meta, _ := structpb.NewStruct(map[string]any{"decision_id": d.ID, "api": d.Input.API, decision.CarryKey: sealed})
	return &authv3.CheckResponse{
		Status:          &status.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: meta,
	}, nil
}

// bodyTooLarge reports a request body above limit from anything that shows it: the size Envoy reports, the
// bytes it sent, the content-length, or Envoy's mark that it sent only part of the body.
func bodyTooLarge(size int64, sent int, headers map[string]string, limit int) bool {
	if headers["x-envoy-auth-partial-body"] == "true" || size > int64(limit) || sent > limit {
		return true
	}
	n, err := strconv.ParseInt(headers["content-length"], 10, 64)
	return err == nil && n > int64(limit)
}

// rateLimitHeaders are what Envoy's local rate limit keys its buckets on; the route removes them before the
// FHIR server. The user header goes with every token that has a subject: only the tiers with a per-user
// rate have a descriptor that uses it, so for the others it changes nothing.
func rateLimitHeaders(d *decision.Decision) []*corev3.HeaderValueOption {
	c := d.Client
	if c == nil {
		return nil
	}
	tier := c.Tier
	if tier == "" {
		tier = ratelimit.DefaultTier
	}
	hs := []*corev3.HeaderValueOption{setHeader(ratelimit.ClientHeader, c.ID), setHeader(ratelimit.TierHeader, tier)}
	if id := d.Identity; id != nil && id.Subject != "" {
		hs = append(hs, setHeader(ratelimit.UserHeader, ratelimit.UserKey(id.Subject)))
	}
	return hs
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

// queryMutations expresses the change from the client's query to the narrowed one as Envoy query mutations.
// Envoy's "set" replaces every value of a key, and its removals run after the sets, so a key is either set
// (to exactly one value) or removed, never both.
func queryMutations(from, to string) ([]*corev3.QueryParameter, []string, error) {
	orig, err := url.ParseQuery(from)
	if err != nil {
		return nil, nil, err
	}
	want, err := url.ParseQuery(to)
	if err != nil {
		return nil, nil, err
	}
	var set []*corev3.QueryParameter
	var remove []string
	for k, vs := range want {
		if slices.Equal(vs, orig[k]) {
			continue
		}
		if len(vs) != 1 {
			return nil, nil, fmt.Errorf("parameter %q: %d values cannot be set at once", k, len(vs))
		}
		set = append(set, &corev3.QueryParameter{Key: k, Value: vs[0]})
	}
	for k := range orig {
		if _, keep := want[k]; !keep {
			remove = append(remove, k)
		}
	}
	return set, remove, nil
}

// deny writes the audit record of a refused request and builds the refusal. If the record cannot be made
// durable the client gets 503 instead: fhirwall never answers without an audit record.
func (s *Server) deny(ctx context.Context, d *decision.Decision) *authv3.CheckResponse {
	r := d.Refusal
	if err := s.Core.Record(ctx, d, r.Status, int64(len(r.Body())), 0); err != nil {
		s.Log.Error("audit write failed; refusing with 503", "decision_id", d.ID, "error", err)
		r = outcome.Unavailable
	}
	headers := []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: DecisionHeader, Value: d.ID},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}}
	for k, v := range r.Headers() {
		headers = append(headers, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
			Headers: headers,
			Body:    string(r.Body()),
		}},
	}
}
