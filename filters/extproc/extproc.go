// Package extproc is Envoy's ext_proc face of fhirwall: it sees each allowed request's response, has its body
// enforced when the decision asks for it, and writes its audit record before the response goes on. The
// decision itself was taken by ext_authz, possibly on another replica: it arrives sealed in the metadata
// Envoy forwards from ext_authz (decision.Core.Unseal), and the decision id header must name it.
package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/tracing"
)

// Server implements envoy.service.ext_proc.v3.ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	Core           *decision.Core
	DecisionHeader string
	Log            *slog.Logger
	// Enforce checks a whole upstream answer before it leaves; nil means Core.EnforceResponse. Tests put a
	// fake here to rewrite or refuse without depending on the enforcement rules.
	Enforce func(ctx context.Context, d *decision.Decision, status int, contentType string, body []byte) (decision.Enforced, error)
	// AdapterTimeout, when set, is what Envoy is asked to wait for an adapter's answer (one
	// override_message_timeout before the adapter runs; fhirwall-xds's max_message_timeout allows it).
	AdapterTimeout time.Duration
	// Tracer joins each exchange to the trace of Envoy's request (its ext_proc stream carries the trace
	// context); nil or off: no spans.
	Tracer *tracing.Tracer
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// sealedOf is the sealed decision Envoy forwarded with a message; "" when there is none.
func sealedOf(req *extprocv3.ProcessingRequest) string {
	return req.GetMetadataContext().GetFilterMetadata()[decision.CarryNamespace].GetFields()[decision.CarryKey].GetStringValue()
}

// MaxRecvMsgSize is the gRPC receive limit the server hosting Server needs (grpc.MaxRecvMsgSize): a
// BUFFERED body of up to decision.MaxResponseBytes arrives in one message, far above gRPC's 4 MiB default,
// which would otherwise fail the stream (and Envoy answer status_on_error).
const MaxRecvMsgSize = decision.MaxResponseBytes + 1<<20

// Processing modes this server asks for per exchange (mode_override on the request-headers answer); read only,
// and the only three internal/xds allows (allowed_override_modes). The
// filter's static mode buffers response bodies, so an Envoy that ignored the override would send bodies
// this server does not need, never skip one it does: a body that was not checked cannot leave.
var (
	// HeadersOnly is for decisions whose response needs no enforcement: only its status is audited.
	HeadersOnly = &filterv3.ProcessingMode{
		RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
		RequestBodyMode: filterv3.ProcessingMode_NONE, ResponseBodyMode: filterv3.ProcessingMode_NONE,
		RequestTrailerMode: filterv3.ProcessingMode_SKIP, ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
	// BufferedResponse sends the whole response body in one message (Envoy holds the headers until the
	// answer), bounded by the listener's buffer limit (decision.MaxResponseBytes).
	BufferedResponse = &filterv3.ProcessingMode{
		RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
		RequestBodyMode: filterv3.ProcessingMode_NONE, ResponseBodyMode: filterv3.ProcessingMode_BUFFERED,
		RequestTrailerMode: filterv3.ProcessingMode_SKIP, ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
	// BufferedRequest sends the whole request body in one message, for a decision an adapter answers on it
	// (decision.NeedsRequestBody): the decision travelled without the body, which Envoy still holds.
	BufferedRequest = &filterv3.ProcessingMode{
		RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
		RequestBodyMode: filterv3.ProcessingMode_BUFFERED, ResponseBodyMode: filterv3.ProcessingMode_NONE,
		RequestTrailerMode: filterv3.ProcessingMode_SKIP, ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
)

// ForwardedHeaders are the only headers this server reads, in Envoy's lower case; decisionHeader is
// Server.DecisionHeader. internal/xds has Envoy forward these alone (forward_rules), so a request's bearer
// token and every other header stay in Envoy; TestReadsOnlyForwardedHeaders holds this file to the list.
func ForwardedHeaders(decisionHeader string) []string {
	return []string{strings.ToLower(decisionHeader), "x-request-id", ":status", "content-type", "content-encoding",
		"content-length", "content-location", "retry-after"}
}

// unchecked is the answer whenever an upstream body that needed enforcement could not be enforced.
var unchecked = decision.UncheckedResponse

// exchangeState is one HTTP exchange's state across the stream's messages.
type exchangeState struct {
	d       *decision.Decision
	started time.Time
	// Set at request headers when an adapter answers on the request body still to come.
	awaitingRequestBody bool
	// Set when this server refused the request at its headers: nothing more is recorded for the exchange.
	refused bool
	// Set at response headers when the body is still to come and must be enforced.
	awaitingBody bool
	status       int
	contentType  string
	encoding     string
	recorded     bool
}

// Process handles one HTTP exchange.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx, span := s.Tracer.StartServer(s.Tracer.FromEnvoy(stream.Context()), tracing.SpanExtProc)
	defer span.End()
	ex := &exchangeState{}
	defer func() {
		// The exchange ended without a response we could see (client or upstream reset, or Envoy gave up on
		// the response before its body reached us): the record is still written, with status 0.
		if ex.d != nil && !ex.recorded {
			if err := s.Core.Record(ctx, ex.d, 0, 0, time.Since(ex.started)); err != nil {
				s.Log.Error("audit write failed", "decision_id", ex.d.ID, "error", err)
			}
		}
	}()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch m := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp, err = s.requestHeaders(ctx, ex, sealedOf(req), m.RequestHeaders, stream.Send)
			if err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			resp, err = s.requestBody(ctx, ex, m.RequestBody, stream.Send)
			if err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			if ex.d == nil && !ex.refused {
				s.localReply(ctx, ex, sealedOf(req), m.ResponseHeaders)
			}
			resp = s.responseHeaders(ctx, ex, m.ResponseHeaders)
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = s.responseBody(ctx, ex, m.ResponseBody)
		default:
			// Trailers are not requested by the filter config; receiving one means the config and this code
			// disagree, and the safe answer is to stop the response.
			resp = immediate(outcome.Internal, "", "")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// requestHeaders opens the decision that came with the request and answers its headers; send is the
// stream's, for a message that goes before the answer.
func (s *Server) requestHeaders(ctx context.Context, ex *exchangeState, sealed string, h *extprocv3.HttpHeaders, send func(*extprocv3.ProcessingResponse) error) (*extprocv3.ProcessingResponse, error) {
	id := header(h.GetHeaders(), s.DecisionHeader)
	if sealed == "" {
		// Never the sealed value in a log: it is the whole decision.
		ex.refused = true
		s.Log.Error("request without a sealed decision; refusing", "decision_id", id)
		return immediate(outcome.Internal, "", ""), nil
	}
	d, err := s.Core.Unseal(ctx, sealed)
	if errors.Is(err, decision.ErrCarryFacts) {
		// The decision is sound, but the facts to enforce its answer cannot be read: like a decision taken
		// without them, 503, and recorded.
		ex.refused = true
		s.Log.Error("facts for a carried decision unavailable; refusing with 503", "decision_id", id, "error", err)
		if rd, rerr := s.Core.UnsealForRecord(sealed); rerr == nil && rd.ID == id {
			r := outcome.Unavailable
			if err := s.Core.Record(ctx, rd, r.Status, int64(len(r.Body())), 0); err != nil {
				s.Log.Error("audit write failed", "decision_id", rd.ID, "error", err)
			}
			return immediate(r, s.DecisionHeader, rd.ID), nil
		}
		return immediate(outcome.Unavailable, "", ""), nil
	}
	if err != nil {
		ex.refused = true
		s.Log.Error("carried decision refused; refusing", "decision_id", id, "error", err)
		return immediate(outcome.Internal, "", ""), nil
	}
	// ext_authz wrote the decision header on this very request: a seal from another request (replayed, or
	// mixed up) names another decision or request id.
	rid := header(h.GetHeaders(), "x-request-id")
	if id != d.ID || rid != "" && d.Input.RequestID != "" && rid != d.Input.RequestID {
		ex.refused = true
		s.Log.Error("carried decision is not this request's; refusing", "decision_id", id, "sealed_decision_id", d.ID,
			"request_id", rid, "sealed_request_id", d.Input.RequestID)
		return immediate(outcome.Internal, "", ""), nil
	}
	ex.d, ex.started = d, time.Now()
	if d.NeedsRequestBody() {
		if h.GetEndOfStream() {
			s.Log.Error("request without the body it was decided on; refusing", "decision_id", d.ID)
			return s.failRequest(ctx, ex), nil
		}
		// The adapter answers on the body, which Envoy still holds: it comes next, whole (BUFFERED).
		ex.awaitingRequestBody = true
		return &extprocv3.ProcessingResponse{
			Response:     &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
			ModeOverride: BufferedRequest,
		}, nil
	}
	if d.AnsweredHere() {
		return s.answerAdapter(ctx, ex, send)
	}
	mode := HeadersOnly
	if d.NeedsResponseBody() {
		mode = BufferedResponse
	}
	return &extprocv3.ProcessingResponse{
		Response:     &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: mode,
	}, nil
}

// requestBody takes the body an adapter answers on, when it is the one the decision was taken on.
func (s *Server) requestBody(ctx context.Context, ex *exchangeState, b *extprocv3.HttpBody, send func(*extprocv3.ProcessingResponse) error) (*extprocv3.ProcessingResponse, error) {
	if !ex.awaitingRequestBody {
		// Asked for by no mode of ours: the config and this code disagree, and nothing must go on.
		if ex.d != nil {
			s.Log.Error("request body not asked for; refusing", "decision_id", ex.d.ID)
			return s.failRequest(ctx, ex), nil
		}
		return immediate(outcome.Internal, "", ""), nil
	}
	ex.awaitingRequestBody = false
	if !b.GetEndOfStream() {
		s.Log.Error("partial request body; refusing", "decision_id", ex.d.ID)
		return s.failRequest(ctx, ex), nil
	}
	if err := ex.d.AttachBody(b.GetBody()); err != nil {
		s.Log.Error("request body is not the one decided on; refusing", "decision_id", ex.d.ID, "error", err)
		return s.failRequest(ctx, ex), nil
	}
	return s.answerAdapter(ctx, ex, send)
}

// answerAdapter has the adapter answer: the AdapterTimeout override first, then the answer itself.
func (s *Server) answerAdapter(ctx context.Context, ex *exchangeState, send func(*extprocv3.ProcessingResponse) error) (*extprocv3.ProcessingResponse, error) {
	if s.AdapterTimeout > 0 {
		// The adapter may need longer than one message's timeout (a $submit validates the Bundle and asks
		// the UM system): Envoy is told first, so it does not give up on a request being answered.
		if err := send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(s.AdapterTimeout)}); err != nil {
			return nil, err
		}
	}
	return s.answer(ctx, ex), nil
}

// failRequest records and returns the 500 for a request that cannot go on with its decision.
func (s *Server) failRequest(ctx context.Context, ex *exchangeState) *extprocv3.ProcessingResponse {
	r := outcome.Internal
	ex.recorded = true
	if err := s.Core.Record(ctx, ex.d, r.Status, int64(len(r.Body())), time.Since(ex.started)); err != nil {
		s.Log.Error("audit write failed", "decision_id", ex.d.ID, "error", err)
	}
	return immediate(r, s.DecisionHeader, ex.d.ID)
}

// localReply records the answer of an allowed request that Envoy made itself before ext_proc saw the request
// (a rate limit's 429, say): the decision arrives with the response headers. A refusal of ext_authz's brings
// no decision, and was recorded there. The exchange then goes on as one with a recorded answer.
func (s *Server) localReply(ctx context.Context, ex *exchangeState, sealed string, h *extprocv3.HttpHeaders) {
	if sealed == "" {
		return
	}
	d, err := s.Core.UnsealForRecord(sealed)
	if err != nil {
		s.Log.Error("local reply with a carried decision that does not open; not recorded", "error", err)
		return
	}
	st, _ := strconv.Atoi(header(h.GetHeaders(), ":status"))
	size, _ := strconv.ParseInt(header(h.GetHeaders(), "content-length"), 10, 64)
	ex.d, ex.recorded, ex.refused = d, true, true
	if err := s.Core.Record(ctx, d, st, size, 0); err != nil {
		s.Log.Error("audit write failed for a local reply", "decision_id", d.ID, "status", st, "error", err)
	}
}

func (s *Server) responseHeaders(ctx context.Context, ex *exchangeState, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if ex.d == nil || ex.refused {
		// A local reply of a filter before this one (an ext_authz refusal, already recorded there, a local
		// reply localReply recorded, or an Envoy error): nothing reached the FHIR server on this exchange, so
		// nothing more to record.
		return headersContinue(nil)
	}
	if ex.awaitingRequestBody {
		// Envoy did not send the body an adapter answers on (it ignored mode_override) and asked the FHIR server
		// instead: that answer is not the one the decision allows.
		ex.awaitingRequestBody = false
		s.Log.Error("the request body an adapter answers on never came; refusing the upstream answer", "decision_id", ex.d.ID)
		return s.failRequest(ctx, ex)
	}
	if ex.d.AnsweredHere() {
		// The adapter's own answer (requestHeaders), recorded there, coming back through the encode path.
		return headersContinue(nil)
	}
	d := ex.d
	st, _ := strconv.Atoi(header(h.GetHeaders(), ":status"))
	edit := decision.AnswerHeaders(d, st, func(name string) string { return header(h.GetHeaders(), strings.ToLower(name)) })
	// A bulk export kick-off's status URL is bound to its client before the client learns it.
	if err := s.Core.BindExportJob(ctx, d, st, header(h.GetHeaders(), "content-location")); err != nil {
		s.Log.Error("export job could not be bound; refusing", "decision_id", d.ID, "error", err)
		return s.failUnchecked(ctx, ex)
	}
	if d.NeedsResponseBody() {
		ex.status = st
		ex.contentType = header(h.GetHeaders(), "content-type")
		ex.encoding = strings.ToLower(strings.TrimSpace(header(h.GetHeaders(), "content-encoding")))
		if !h.GetEndOfStream() {
			// The body comes next (BUFFERED); enforcement and the record happen there. Its length may change.
			ex.awaitingBody = true
			return headersContinue(edited(&extprocv3.HeaderMutation{
				SetHeaders:    []*corev3.HeaderValueOption{s.decisionHeader(d)},
				RemoveHeaders: []string{"content-length"},
			}, edit))
		}
		// No body at all: enforcement still sees the (empty) answer, which it may refuse.
		e, r := s.enforce(ctx, ex, nil)
		if r != nil {
			return r
		}
		if e.Status != st || len(e.Body) > 0 {
			return s.replace(ctx, ex, e)
		}
		if r := s.record(ctx, ex, e, 0); r != nil {
			return r
		}
		return headersContinue(edited(&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{s.decisionHeader(d)}}, edit))
	}
	size, _ := strconv.ParseInt(header(h.GetHeaders(), "content-length"), 10, 64)
	ex.recorded = true
	if err := s.Core.Record(ctx, d, st, size, time.Since(ex.started)); err != nil {
		s.Log.Error("audit write failed; refusing with 503", "decision_id", d.ID, "error", err)
		return immediate(outcome.Unavailable, s.DecisionHeader, d.ID)
	}
	return headersContinue(edited(&extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{s.decisionHeader(d)}}, edit))
}

// edited adds the core's header changes (decision.AnswerHeaders) to hm, in Envoy's lower-case names.
func edited(hm *extprocv3.HeaderMutation, e decision.HeaderEdit) *extprocv3.HeaderMutation {
	for _, name := range e.Remove {
		hm.RemoveHeaders = append(hm.RemoveHeaders, strings.ToLower(name))
	}
	for name, v := range e.Set {
		hm.SetHeaders = append(hm.SetHeaders, set(strings.ToLower(name), v))
	}
	return hm
}

func (s *Server) responseBody(ctx context.Context, ex *exchangeState, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if !ex.awaitingBody {
		if ex.d == nil || ex.refused || !ex.d.NeedsResponseBody() {
			// A local reply (ext_authz refusal, rate limit, Envoy error), or a headers-only decision whose
			// mode_override Envoy did not apply: nothing to enforce, and its record, if any, is written.
			return bodyContinue()
		}
		s.Log.Error("response body before its headers; refusing", "decision_id", ex.d.ID)
		return immediate(unchecked, s.DecisionHeader, ex.d.ID)
	}
	ex.awaitingBody = false
	if !b.GetEndOfStream() {
		// BUFFERED sends the whole body at once; a part of it cannot be checked.
		s.Log.Error("partial response body; refusing", "decision_id", ex.d.ID)
		return s.failUnchecked(ctx, ex)
	}
	body, err := decision.DecodeBody(ex.encoding, b.GetBody())
	if err != nil {
		s.Log.Error("upstream body could not be decoded; refusing", "decision_id", ex.d.ID, "encoding", ex.encoding, "error", err)
		return s.failUnchecked(ctx, ex)
	}
	e, r := s.enforce(ctx, ex, body)
	if r != nil {
		return r
	}
	if e.Status != ex.status {
		return s.replace(ctx, ex, e)
	}
	if r := s.record(ctx, ex, e, int64(len(e.Body))); r != nil {
		return r
	}
	hm := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
		s.decisionHeader(ex.d),
		set("content-length", strconv.Itoa(len(e.Body))),
	}}
	if ex.encoding != "" && ex.encoding != "identity" {
		hm.RemoveHeaders = []string{"content-encoding"}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{
			HeaderMutation: hm,
			BodyMutation:   &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: e.Body}},
		},
	}}}
}

// enforce runs response enforcement; on error it returns the 502 answer to send instead (recorded).
func (s *Server) enforce(ctx context.Context, ex *exchangeState, body []byte) (decision.Enforced, *extprocv3.ProcessingResponse) {
	enforce := s.Enforce
	if enforce == nil {
		enforce = s.Core.EnforceResponse
	}
	e, err := enforce(ctx, ex.d, ex.status, ex.contentType, body)
	if err != nil {
		s.Log.Error("response enforcement failed; refusing", "decision_id", ex.d.ID, "error", err)
		return e, s.failUnchecked(ctx, ex)
	}
	return e, nil
}

// replace answers with enforcement's own status and body (a refusal such as 404) instead of upstream's.
func (s *Server) replace(ctx context.Context, ex *exchangeState, e decision.Enforced) *extprocv3.ProcessingResponse {
	if r := s.record(ctx, ex, e, int64(len(e.Body))); r != nil {
		return r
	}
	if e.Header != nil { // enforcement's own answer with its own headers (a 304)
		hs := []*corev3.HeaderValueOption{set(s.DecisionHeader, ex.d.ID), set("cache-control", "no-store"), set("pragma", "no-cache")}
		for k, v := range e.Header {
			hs = append(hs, set(strings.ToLower(k), v))
		}
		return immediateWith(e.Status, e.Body, hs)
	}
	return immediateBody(e.Status, e.Body, ex.d.ID, s.DecisionHeader)
}

// failUnchecked records and returns the 502 for an answer that could not be checked.
func (s *Server) failUnchecked(ctx context.Context, ex *exchangeState) *extprocv3.ProcessingResponse {
	body := unchecked.Body()
	ex.recorded = true
	if err := s.Core.Record(ctx, ex.d, unchecked.Status, int64(len(body)), time.Since(ex.started)); err != nil {
		s.Log.Error("audit write failed", "decision_id", ex.d.ID, "error", err)
	}
	return immediate(unchecked, s.DecisionHeader, ex.d.ID)
}

// record writes the enforced answer's audit record; on failure it returns the 503 to send instead.
func (s *Server) record(ctx context.Context, ex *exchangeState, e decision.Enforced, size int64) *extprocv3.ProcessingResponse {
	ex.recorded = true
	if err := s.Core.RecordEnforced(ctx, ex.d, e, size, time.Since(ex.started)); err != nil {
		s.Log.Error("audit write failed; refusing with 503", "decision_id", ex.d.ID, "error", err)
		return immediate(outcome.Unavailable, s.DecisionHeader, ex.d.ID)
	}
	return nil
}

func (s *Server) decisionHeader(d *decision.Decision) *corev3.HeaderValueOption {
	return set(s.DecisionHeader, d.ID)
}

func headersContinue(hm *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	var common *extprocv3.CommonResponse
	if hm != nil {
		common = &extprocv3.CommonResponse{HeaderMutation: hm}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: common}}}
}

func bodyContinue() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
}

func set(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

func header(h *corev3.HeaderMap, name string) string {
	for _, v := range h.GetHeaders() {
		if v.GetKey() == name {
			if v.GetValue() != "" {
				return v.GetValue()
			}
			return string(v.GetRawValue())
		}
	}
	return ""
}

// answer sends an adapter's answer (decision.Adapter) in place of the FHIR server's, once its record is
// durable: the request never reaches the FHIR server.
func (s *Server) answer(ctx context.Context, ex *exchangeState) *extprocv3.ProcessingResponse {
	d := ex.d
	a := s.Core.Answer(ctx, d)
	ex.recorded = true
	if err := s.Core.RecordAnswer(ctx, d, a, time.Since(ex.started)); err != nil {
		s.Log.Error("audit write failed; refusing with 503", "decision_id", d.ID, "error", err)
		return immediate(outcome.Unavailable, s.DecisionHeader, d.ID)
	}
	hs := []*corev3.HeaderValueOption{set(s.DecisionHeader, d.ID)}
	for k, vs := range a.Header {
		for _, v := range vs {
			hs = append(hs, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)},
				AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
		}
	}
	return immediateWith(a.Status, a.Body, hs)
}

// immediate answers with a refusal instead of the upstream's answer; decisionID, when known, goes along.
func immediate(r outcome.Refusal, decisionHeader, decisionID string) *extprocv3.ProcessingResponse {
	var hs []*corev3.HeaderValueOption
	for k, v := range r.Headers() {
		hs = append(hs, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}})
	}
	if decisionID != "" {
		hs = append(hs, set(decisionHeader, decisionID))
	}
	return immediateWith(r.Status, r.Body(), hs)
}

// immediateBody answers with enforcement's status and body (an OperationOutcome) instead of upstream's.
func immediateBody(status int, body []byte, decisionID, decisionHeader string) *extprocv3.ProcessingResponse {
	hs := []*corev3.HeaderValueOption{set("content-type", outcome.ContentType), set("cache-control", "no-store"), set("pragma", "no-cache"), set(decisionHeader, decisionID)}
	if status == http.StatusServiceUnavailable {
		hs = append(hs, set("retry-after", outcome.RetryAfterSeconds))
	}
	return immediateWith(status, body, hs)
}

// RefusalDetails is the response code details of every immediate response this server sends. Envoy's
// local_reply_config (internal/xds) keeps replies carrying it as they are, as it keeps ext_authz denials.
const RefusalDetails = "fhirwall_response_refused"

func immediateWith(status int, body []byte, hs []*corev3.HeaderValueOption) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: hs},
		Body:    body,
		Details: RefusalDetails,
	}}}
}
