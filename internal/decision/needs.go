package decision

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/fhirwall/fhirwall/internal/outcome"
)

// MaxResponseBytes bounds an upstream body that response enforcement must read whole: the standalone proxy
// reads at most this much, and Envoy buffers at most this much (per_connection_buffer_limit_bytes, internal/xds).
// A larger answer is refused (502), never passed on unchecked.
const MaxResponseBytes = 16 << 20

// NeedsResponseBody reports whether the response of this allowed decision must be read whole and passed
// through EnforceResponse before it leaves: a compartment to hold it to, a data-scope profile to apply, or a
// shape the client asked for (Invariant 1: applied after enforcement, never by the FHIR server). Only then do
// the faces buffer it; every other response streams as it comes.
func (d *Decision) NeedsResponseBody() bool {
	if d == nil || !d.Allow {
		return false
	}
	o := d.Policy.Obligations
	return o.Compartment != nil || o.DataScope != "" || !d.Shape.Empty()
}

// UncheckedResponse is the answer when an upstream body that needed enforcement could not be enforced
// (enforcement failed, the body was too large or could not be decoded): never the body itself.
var UncheckedResponse = outcome.Refusal{Status: http.StatusBadGateway, Code: "exception", Diagnostics: "the upstream answer could not be checked"}

// ErrResponseTooLarge: an upstream answer (after decoding) is larger than MaxResponseBytes; it is refused,
// never passed unchecked.
var ErrResponseTooLarge = errors.New("upstream answer larger than MaxResponseBytes")

// DecodeBody undoes the upstream's Content-Encoding (identity or gzip), reading at most MaxResponseBytes of
// the result, so both faces hand EnforceResponse the same bytes.
func DecodeBody(encoding string, body []byte) ([]byte, error) {
	switch encoding {
	case "", "identity":
		if len(body) > MaxResponseBytes {
			return nil, ErrResponseTooLarge
		}
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		out, err := io.ReadAll(io.LimitReader(zr, MaxResponseBytes+1))
		if err != nil {
			return nil, err
		}
		if len(out) > MaxResponseBytes {
			return nil, ErrResponseTooLarge
		}
		return out, nil
	default:
		return nil, fmt.Errorf("content-encoding %q is not supported", encoding)
	}
}
