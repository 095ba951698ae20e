package datascope

import "testing"

func TestSensitiveReadsSecurityLabels(t *testing.T) {
	label := func(system, code string) string {
		return `{"resourceType":"Condition","meta":{"security":[{"system":"` + system + `","code":"` + code + `"}]}}`
	}
	for _, tc := range []struct {
		name string
		res  string
		want bool
	}{
		{"no meta", `{"resourceType":"Condition"}`, false},
		{"meta without security", `{"resourceType":"Condition","meta":{"profile":["x"]}}`, false},
		{"empty security", `{"resourceType":"Condition","meta":{"security":[]}}`, false},
		{"restricted", label(confidentialitySystem, "R"), true},
		{"very restricted", label(confidentialitySystem, "V"), true},
		{"normal", label(confidentialitySystem, "N"), false},
		{"moderate", label(confidentialitySystem, "M"), false},
		{"restricted, R3-era URL", label("http://hl7.org/fhir/v3/Confidentiality", "R"), true},
		{"restricted, by OID", label("urn:oid:2.16.840.1.113883.5.25", "R"), true},
		{"substance use disorder", label(actCodeSystem, "SUD"), true},
		{"alcohol use disorder", label(actCodeSystem, "ETHUD"), true},
		{"HIV", label(actCodeSystem, "HIV"), true},
		{"psychotherapy note", label(actCodeSystem, "PSYTHPN"), true},
		{"behavioral health", label(actCodeSystem, "BH"), true},
		{"sickle cell", label(actCodeSystem, "SICKLE"), true},
		{"42 CFR Part 2", label(actCodeSystem, "42CFRPart2"), true},
		{"Title 38 section 7332", label(actCodeSystem, "Title38Section7332"), true},
		{"ActCode that is not a sensitivity", label(actCodeSystem, "HTEST"), false},
		{"an ActCode code under the confidentiality system", label(confidentialitySystem, "HIV"), false},
		{"R in an unknown system", label("https://example.org/labels", "R"), false},
		{"R with no system", `{"resourceType":"Condition","meta":{"security":[{"code":"R"}]}}`, false},
		{"sensitivity system without a code", `{"resourceType":"Condition","meta":{"security":[{"system":"` + actCodeSystem + `"}]}}`, true},
		{"one of several labels", `{"resourceType":"Condition","meta":{"security":[{"system":"` + actCodeSystem + `","code":"HTEST"},
			{"system":"` + confidentialitySystem + `","code":"V"}]}}`, true},
		{"meta of the wrong type", `{"resourceType":"Condition","meta":"R"}`, true},
		{"security not an array", `{"resourceType":"Condition","meta":{"security":{"system":"x","code":"N"}}}`, true},
		{"security entry not an object", `{"resourceType":"Condition","meta":{"security":["R"]}}`, true},
		{"code not a string", `{"resourceType":"Condition","meta":{"security":[{"system":"https://example.org","code":1}]}}`, true},
		{"system not a string", `{"resourceType":"Condition","meta":{"security":[{"system":null,"code":"N"}]}}`, true},
		{"contained resource labelled", `{"resourceType":"ExplanationOfBenefit","contained":[` + label(actCodeSystem, "PSY") + `]}`, true},
		{"bundle entry labelled", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}},{"resource":` + label(confidentialitySystem, "R") + `}]}`, true},
		{"bundle entries plain", `{"resourceType":"Bundle","entry":[{"resource":` + label(confidentialitySystem, "N") + `}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sensitive(resource(tc.res)(t)); got != tc.want {
				t.Errorf("Sensitive = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSensitiveFailsClosedBeyondMaxDepth(t *testing.T) {
	r := map[string]any{"resourceType": "Basic"}
	cur := r
	for range maxDepth + 1 {
		next := map[string]any{}
		cur["extension"] = []any{next}
		cur = next
	}
	if !Sensitive(r) {
		t.Error("a resource nested deeper than can be walked was not sensitive")
	}
}
