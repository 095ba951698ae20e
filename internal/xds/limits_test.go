package xds

import (
	"testing"

	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/proto"

	"github.com/fhirwall/fhirwall/filters/extproc"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
)

// Envoy answers 413 above ext_authz's body limit; the standalone proxy does so above fhir.MaxBodyBytes. The
// two modes must refuse at the same size.
func TestEnvoyAndStandaloneShareTheBodyLimit(t *testing.T) {
	if authzMaxRequestBytes != fhir.MaxBodyBytes {
		t.Fatalf("ext_authz max_request_bytes %d, standalone limit %d", authzMaxRequestBytes, fhir.MaxBodyBytes)
	}
}

// Envoy refuses a response body that needs enforcement above its buffer limit; the standalone proxy does so
// above decision.MaxResponseBytes. The two modes must refuse at the same size.
func TestEnvoyAndStandaloneShareTheResponseLimit(t *testing.T) {
	if responseBufferLimitBytes != decision.MaxResponseBytes {
		t.Fatalf("Envoy buffer limit %d, standalone response limit %d", responseBufferLimitBytes, decision.MaxResponseBytes)
	}
}

// Envoy keeps ext_proc's immediate responses (refusals such as a 404) only if they carry the details the
// local-reply mapper looks for.
func TestLocalReplyMapperKeepsExtProcRefusals(t *testing.T) {
	if extProcRefusalDetail != extproc.RefusalDetails {
		t.Fatalf("mapper keeps %q, ext_proc sends %q", extProcRefusalDetail, extproc.RefusalDetails)
	}
}

// Envoy ignores a mode_override not in allowed_override_modes; the two modes fhirwall-proxy asks for must be
// exactly the ones allowed.
func TestExtProcOverrideModesAreAllowed(t *testing.T) {
	if !proto.Equal(extproc.HeadersOnly, extProcMode(ext_procv3.ProcessingMode_NONE)) ||
		!proto.Equal(extproc.BufferedResponse, extProcMode(ext_procv3.ProcessingMode_BUFFERED)) {
		t.Fatal("ext_proc server's mode_override values differ from the filter's allowed_override_modes")
	}
}
