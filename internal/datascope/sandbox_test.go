package datascope

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestOnlyResourcesTaggedSandboxAllTheWayDownAreSynthetic(t *testing.T) {
	const tag = `"meta":{"tag":[{"system":"https://fhirwall.dev/CodeSystem/environment","code":"sandbox"}]}`
	for _, tc := range []struct {
		name string
		res  string
		want bool
	}{
		{"tagged", `{"resourceType":"Patient",` + tag + `}`, true},
		{"untagged", `{"resourceType":"Patient"}`, false},
		{"tag among others", `{"resourceType":"Patient","meta":{"tag":[{"system":"x","code":"y"},{"system":"https://fhirwall.dev/CodeSystem/environment","code":"sandbox"}]}}`, true},
		{"code only", `{"resourceType":"Patient","meta":{"tag":[{"code":"sandbox"}]}}`, false},
		{"another environment", `{"resourceType":"Patient","meta":{"tag":[{"system":"https://fhirwall.dev/CodeSystem/environment","code":"production"}]}}`, false},
		{"as a security label, not a tag", `{"resourceType":"Patient","meta":{"security":[{"system":"https://fhirwall.dev/CodeSystem/environment","code":"sandbox"}]}}`, false},
		{"tag not an array", `{"resourceType":"Patient","meta":{"tag":{"system":"https://fhirwall.dev/CodeSystem/environment","code":"sandbox"}}}`, false},
		{"meta not an object", `{"resourceType":"Patient","meta":"sandbox"}`, false},
		{"untagged contained", `{"resourceType":"Patient",` + tag + `,"contained":[{"resourceType":"Organization"}]}`, false},
		{"tagged contained", `{"resourceType":"Patient",` + tag + `,"contained":[{"resourceType":"Organization",` + tag + `}]}`, true},
		{"operation output: Parameters needs the tag too", `{"resourceType":"Parameters","parameter":[{"resource":{"resourceType":"Patient",` + tag + `}}]}`, false},
		{"a Bundle is an envelope, its entries are judged", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient",` + tag + `}}]}`, true},
		{"an untagged entry of a nested Bundle", `{"resourceType":"Parameters",` + tag + `,"parameter":[{"resource":{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}}]}}]}`, false},
		{"an OperationOutcome is an envelope", `{"resourceType":"OperationOutcome","issue":[]}`, true},
		{"deeper than can be walked", strings.Repeat(`{"resourceType":"Patient",`+tag+`,"contained":[`, 40) + `{}` + strings.Repeat(`]}`, 40), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res map[string]any
			if err := json.Unmarshal([]byte(tc.res), &res); err != nil {
				t.Fatal(err)
			}
			if got := Synthetic(res); got != tc.want {
				t.Fatalf("Synthetic = %v, want %v", got, tc.want)
			}
		})
	}
}
