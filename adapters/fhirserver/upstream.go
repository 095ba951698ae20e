package fhirserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults for the zero values of Settings; the timeouts match what fhirwall-xds gives Envoy's FHIR-server
// cluster and route (internal/xds), so both modes wait on the server alike.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultConnectTimeout = 2 * time.Second
	// DefaultLookupTimeout is shorter than Envoy's ext_authz timeout (2 s): a slow FHIR server during a
	// decision gets fhirwall's own 503 rather than Envoy's.
	DefaultLookupTimeout = 1500 * time.Millisecond
)

// Settings say how fhirwall reaches the FHIR server (config fhir_server).
type Settings struct {
	URL string // FHIR base, http:// or https://
	// CAFile is the PEM bundle an https server's certificate must chain to; no other CA is trusted.
	// ServerName is the name sent as SNI and checked in the certificate; empty: the URL's host.
	CAFile     string
	ServerName string
	// Timeout bounds the wait for an answer's headers (Envoy's route timeout); ConnectTimeout one connection
	// attempt and its TLS handshake; LookupTimeout one whole lookup fhirwall makes itself (compartment,
	// attribution, consent), usually while a request waits for its decision.
	Timeout        time.Duration
	ConnectTimeout time.Duration
	LookupTimeout  time.Duration
}

// Upstream is fhirwall's one client of the FHIR server (ARCHITECTURE Invariant 6): one transport, with the
// configured CA, server name and timeouts, under the standalone gateway's reverse proxy and every adapter.
type Upstream struct {
	URL *url.URL
	// Transport carries every exchange with the FHIR server; the gateway proxies through it.
	Transport *http.Transport
	// Lookups is Transport with LookupTimeout on each exchange, for the checks a request waits for (the
	// compartment check of a read).
	Lookups *http.Client
	// Refreshes is Transport with the FHIR server's Timeout on each exchange, for the adapters' shared cache
	// refreshes (attribution, consent): they run detached from any request, bounded by their own budget, and
	// reading a 100,000-member attribution Group takes longer than one request's lookup may wait.
	Refreshes *http.Client
	// Jobs is Transport with JobTimeout on each exchange, for background jobs nobody waits on (a
	// $bulk-member-match writing a Group of 10,000 members, which HAPI takes most of a minute to index).
	Jobs *http.Client
}

// JobTimeout bounds one exchange of a background job.
const JobTimeout = 10 * time.Minute

// Base is the FHIR base URL as configured, without a trailing slash.
func (u *Upstream) Base() string { return strings.TrimSuffix(u.URL.String(), "/") }

// Dial builds the Upstream for s. It opens no connection; a CA file that cannot be read or holds no
// certificate is an error now rather than at the first request.
func Dial(s Settings) (*Upstream, error) {
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fhir server: url %q: want an http(s) URL", s.URL)
	}
	timeout := orDefault(s.Timeout, DefaultTimeout)
	connect := orDefault(s.ConnectTimeout, DefaultConnectTimeout)
	lookup := orDefault(s.LookupTimeout, DefaultLookupTimeout)
	t := &http.Transport{
		// Never an environment proxy: fhirwall talks to the FHIR server it was configured with, directly.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	switch {
	case u.Scheme == "https":
		if s.CAFile == "" {
			return nil, fmt.Errorf("fhir server: url %q: https needs a CA file", s.URL)
		}
		pool, err := loadCAs(s.CAFile)
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: s.ServerName, MinVersion: tls.VersionTLS12}
	case s.CAFile != "" || s.ServerName != "":
		return nil, fmt.Errorf("fhir server: url %q: a CA file or server name needs an https URL", s.URL)
	}
	return &Upstream{URL: u, Transport: t, Lookups: &http.Client{Transport: t, Timeout: lookup},
		Refreshes: &http.Client{Transport: t, Timeout: timeout}, Jobs: &http.Client{Transport: t, Timeout: JobTimeout}}, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fhir server: ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("fhir server: ca file " + path + ": no PEM certificate in it")
	}
	return pool, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
