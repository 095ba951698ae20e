package main

import (
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/test/bench/benchdata"
)

// The harness runs its helpers as separate processes (itself, with -role), so the CPU and memory it reports
// for a system under test are that system's alone.

// serveUpstream is the fast static FHIR responder: every GET gets one searchset Bundle of five of member-01's
// ExplanationOfBenefits (about 6 KB), as a FHIR server would answer the benchmark's search.
func serveUpstream(addr string) error {
	body := []byte(benchdata.EOBSearchPage(5))
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
