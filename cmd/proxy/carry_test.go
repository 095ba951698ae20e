package main

import (
	"testing"

	"github.com/fhirwall/fhirwall/filters/authz"
	"github.com/fhirwall/fhirwall/filters/extproc"
)

// TestFacesAgreeOnWhereTheDecisionTravels: ext_proc looks for the sealed decision where ext_authz puts it
// (the faces do not import each other, so main is where both are in sight).
func TestFacesAgreeOnWhereTheDecisionTravels(t *testing.T) {
	if authz.MetadataNamespace != extproc.MetadataNamespace || authz.SealedKey != extproc.SealedKey {
		t.Fatalf("ext_authz writes %s/%s, ext_proc reads %s/%s", authz.MetadataNamespace, authz.SealedKey,
			extproc.MetadataNamespace, extproc.SealedKey)
	}
}
