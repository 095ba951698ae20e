package xds

import (
	"slices"
	"testing"

	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/proto"

	"github.com/fhirwall/fhirwall/filters/authz"
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

// Envoy ignores a mode_override not in allowed_override_modes; the three modes fhirwall-proxy asks for must be
// exactly the ones allowed.
func TestExtProcOverrideModesAreAllowed(t *testing.T) {
	allowed := extProcOverrideModes()
	asked := []*ext_procv3.ProcessingMode{extproc.HeadersOnly, extproc.BufferedResponse, extproc.BufferedRequest}
	if len(allowed) != len(asked) {
		t.Fatalf("%d modes allowed, fhirwall-proxy asks for %d", len(allowed), len(asked))
	}
	for i := range asked {
		if !proto.Equal(asked[i], allowed[i]) {
			t.Fatalf("ext_proc server's mode_override %v differs from the filter's allowed %v", asked[i], allowed[i])
		}
	}
}

// ext_proc reads the sealed decision from the namespace the filter forwards: ext_authz's.
func TestExtProcGetsTheNamespaceTheDecisionIsSealedIn(t *testing.T) {
	if extAuthzFilterName != decision.CarryNamespace {
		t.Fatalf("filter forwards %q, ext_proc reads %q", extAuthzFilterName, decision.CarryNamespace)
	}
}

// Envoy forwards ext_proc exactly the headers fhirwall-proxy's ext_proc reads: one it reads and Envoy does not
// send would read as absent (a missing decision id refuses every request), one Envoy sends beyond them (the
// bearer token) should not leave Envoy.
func TestExtProcForwardsWhatItReads(t *testing.T) {
	want := extproc.ForwardedHeaders(authz.DecisionHeader)
	if !slices.Equal(extProcForwardedHeaders, want) {
		t.Fatalf("Envoy forwards %q, ext_proc reads %q", extProcForwardedHeaders, want)
	}
}
