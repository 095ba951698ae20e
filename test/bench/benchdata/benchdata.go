// Package benchdata holds the benchmark request's answer, shared by the load harness's static upstream
// (test/bench/load) and the micro-benchmarks that measure enforcing it (internal/decision).
package benchdata

import (
	"fmt"
	"strconv"
	"strings"
)

// EOBSearchPage is the static upstream's answer to the benchmark request: a searchset of n of member-01's
// CARIN BB ExplanationOfBenefits (about 1.3 KB each), its self link on the upstream's own address.
func EOBSearchPage(n int) string {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":` + strconv.Itoa(n) + `,"link":[{"relation":"self","url":"http://127.0.0.1/fhir/ExplanationOfBenefit?patient=member-01"}],"entry":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"http://127.0.0.1/fhir/ExplanationOfBenefit/eob-%d","resource":{"resourceType":"ExplanationOfBenefit","id":"eob-%d",`+
			`"meta":{"profile":["http://hl7.org/fhir/us/carin-bb/StructureDefinition/C4BB-ExplanationOfBenefit-Professional-NonClinician"]},`+
			`"status":"active","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},`+
			`"use":"claim","patient":{"reference":"Patient/member-01"},"billablePeriod":{"start":"2024-0%d-01"},"created":"2024-0%d-15T00:00:00Z",`+
			`"insurer":{"reference":"Organization/payer"},"provider":{"reference":"Organization/clinic"},"outcome":"complete",`+
			`"insurance":[{"focal":true,"coverage":{"reference":"Coverage/cov-member-01"}}],`+
			`"item":[{"sequence":1,"productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":"99213"}]},"servicedDate":"2024-0%d-01",`+
			`"adjudication":[{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"submitted"}]},"amount":{"value":120.0,"currency":"USD"}},`+
			`{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"benefit"}]},"amount":{"value":96.0,"currency":"USD"}}]}],`+
			`"total":[{"category":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adjudication","code":"submitted"}]},"amount":{"value":120.0,"currency":"USD"}}],`+
			`"payment":{"amount":{"value":96.0,"currency":"USD"}}},"search":{"mode":"match"}}`, i, i, i%9+1, i%9+1, i%9+1)
	}
	b.WriteString(`]}`)
	return b.String()
}
