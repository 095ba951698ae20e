package xds

import (
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir"
)

// Envoy answers 413 above ext_authz's body limit; the standalone proxy does so above fhir.MaxBodyBytes. The
// two modes must refuse at the same size.
func TestEnvoyAndStandaloneShareTheBodyLimit(t *testing.T) {
	if authzMaxRequestBytes != fhir.MaxBodyBytes {
		t.Fatalf("ext_authz max_request_bytes %d, standalone limit %d", authzMaxRequestBytes, fhir.MaxBodyBytes)
	}
}
