package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The harness runs its helpers as separate processes (itself, with -role), so the CPU and memory it reports
// for a system under test are that system's alone.

// serveUpstream is the fast static FHIR responder: every GET gets one searchset Bundle of five of member-01's
// ExplanationOfBenefits (about 6 KB), as a FHIR server would answer the benchmark's search.
func serveUpstream(addr string) error {
	body := []byte(eobBundle(5))
	size := strconv.Itoa(len(body))
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/fhir+json;charset=utf-8")
		w.Header().Set("Content-Length", size)
		w.Write(body)
	}))
}

// serveBareProxy is the physical limit of a Go reverse proxy: httputil.ReverseProxy, nothing else.
func serveBareProxy(addr, to string) error {
	u, err := url.Parse(to)
	if err != nil {
		return err
	}
	// The API's prefix maps onto the FHIR base, as Envoy's prefix_rewrite and fhirwall do.
	p := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.Out.URL.Scheme, r.Out.URL.Host, r.Out.Host = u.Scheme, u.Host, u.Host
		r.Out.URL.Path = u.Path + strings.TrimPrefix(r.In.URL.Path, "/patient-access/fhir")
		r.Out.URL.RawPath = ""
	}}
	p.Transport = &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	return (&http.Server{Addr: addr, Handler: p, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe()
}

func eobBundle(n int) string {
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
