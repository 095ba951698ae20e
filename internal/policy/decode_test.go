package policy

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestDecisionIsReadAsEncodingJSONWouldReadIt: decodeResult gives what the JSON of the decision gave before
// (absent and null fields zero, unknown fields ignored) and refuses whatever JSON refused.
func TestDecisionIsReadAsEncodingJSONWouldReadIt(t *testing.T) {
	for _, doc := range []string{
		`{"allow": true, "status": 200, "reasons": ["patient_scope"], "obligations": {"compartment": {"patient": "member-01"}, "narrow": [{"param": "patient", "value": "member-01"}, {"param": "category", "value": "laboratory,vital-signs"}], "data_scope": "patient-access", "rate_class": "default"}}`,
		`{"allow": false, "status": 400, "reasons": ["unsupported_parameter"], "details": "search parameter \"x\" is not supported", "obligations": {}}`,
		`{"allow": true, "status": 200, "reasons": [], "obligations": {"compartment": {"patients": ["member-01", "member-04"]}, "narrow": []}}`,
		`{"allow": true, "status": 200, "reasons": null, "details": null, "obligations": null, "extra": {"ignored": [1, 2]}}`,
		`{"status": 403}`,
		`{}`,
		`{"allow": "yes", "status": 200}`,
		`{"allow": true, "status": 200.5}`,
		`{"allow": true, "status": "200"}`,
		`{"allow": true, "status": 200, "reasons": "patient_scope"}`,
		`{"allow": true, "status": 200, "reasons": [1]}`,
		`{"allow": true, "status": 200, "obligations": {"narrow": [["patient", "member-01"]]}}`,
		`{"allow": true, "status": 200, "obligations": {"narrow": [{"param": 1}]}}`,
		`{"allow": true, "status": 200, "obligations": {"compartment": "member-01"}}`,
		`{"allow": true, "status": 200, "obligations": []}`,
		`{"allow": true, "status": 200, "obligations": {"resource_types": {"*": {}, "Observation": {"category": ["vital-signs", "laboratory"]}}, "public_types": ["Practitioner"]}}`,
		`{"allow": true, "status": 200, "obligations": {"resource_types": {"Observation": {"category": "vital-signs"}}}}`,
		`{"allow": true, "status": 200, "obligations": {"resource_types": {"Observation": []}}}`,
		`{"allow": true, "status": 200, "obligations": {"resource_types": ["Observation"]}}`,
		`{"allow": true, "status": 200, "obligations": {"public_types": "Practitioner"}}`,
		`[true]`,
		`"allow"`,
	} {
		var want Result
		wantErr := json.Unmarshal([]byte(doc), &want)
		got, err := decodeResult(ast.MustParseTerm(doc).Value)
		switch {
		case (err != nil) != (wantErr != nil):
			t.Errorf("%s: error %v, encoding/json says %v", doc, err, wantErr)
		case err == nil && !reflect.DeepEqual(got, want):
			t.Errorf("%s:\n got %+v\nwant %+v", doc, got, want)
		}
	}
}

// TestNarrowingAsASetIsReadSorted: a policy that leaves narrow a set (OPA writes it to JSON as an array) is
// read in the set's order.
func TestNarrowingAsASetIsReadSorted(t *testing.T) {
	got, err := decodeResult(ast.MustParseTerm(`{"allow": true, "status": 200, "obligations": {"narrow": {{"param": "patient", "value": "m"}, {"param": "category", "value": "lab"}}}}`).Value)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Narrow{{"category", "lab"}, {"patient", "m"}}; !reflect.DeepEqual(got.Obligations.Narrow, want) {
		t.Fatalf("got %v, want %v", got.Obligations.Narrow, want)
	}
}
