// Package extproc is Envoy's ext_proc face of fhirwall: it sees each allowed request's response and writes its
// audit record before the response goes on. The decision itself was taken by ext_authz; the decision id
// header joins the two.
package extproc

import (
	"errors"
	"io"
	"log/slog"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

// Server implements envoy.service.ext_proc.v3.ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	Core           *decision.Core
	Pending        *decision.Pending
	DecisionHeader string
	Log            *slog.Logger
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// Process handles one HTTP exchange.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := stream.Context()
	var (
		d        *decision.Decision
		started  time.Time
		recorded bool
	)
	defer func() {
		// The exchange ended without a response we could see (client or upstream reset): the record is still
		// written, with status 0.
		if d != nil && !recorded {
			if err := s.Core.Record(ctx, d, 0, 0, time.Since(started)); err != nil {
				s.Log.Error("audit write failed", "decision_id", d.ID, "error", err)
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
			id := header(m.RequestHeaders.GetHeaders(), s.DecisionHeader)
			var ok bool
			if d, ok = s.Pending.Take(id); !ok {
				s.Log.Error("response without a decision; refusing", "decision_id", id)
				resp = immediate(outcome.Internal)
				break
			}
			started = time.Now()
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			if d == nil {
				// A local reply of a filter before this one (an ext_authz refusal, already recorded there, or an
				// Envoy error): nothing reached the FHIR server on this exchange, so nothing more to record.
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
				break
			}
			st, _ := strconv.Atoi(header(m.ResponseHeaders.GetHeaders(), ":status"))
			size, _ := strconv.ParseInt(header(m.ResponseHeaders.GetHeaders(), "content-length"), 10, 64)
			recorded = true
			if err := s.Core.Record(ctx, d, st, size, time.Since(started)); err != nil {
				s.Log.Error("audit write failed; refusing with 503", "decision_id", d.ID, "error", err)
				resp = immediate(outcome.Unavailable)
				break
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
				Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
					Header:       &corev3.HeaderValue{Key: s.DecisionHeader, RawValue: []byte(d.ID)},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
				}}}},
			}}}
		default:
			// Bodies and trailers are not requested by the filter config; receiving one means the config and this
			// code disagree, and the safe answer is to stop the response.
			resp = immediate(outcome.Internal)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
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

func immediate(r outcome.Refusal) *extprocv3.ProcessingResponse {
	var hs []*corev3.HeaderValueOption
	for k, v := range r.Headers() {
		hs = append(hs, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}})
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: hs},
		Body:    r.Body(),
	}}}
}
