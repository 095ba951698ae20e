// Package stackenv tells tests where the real stack started by test/stack/up.sh listens and how to reach it:
// Envoy's public listener (TLS when the stack generated its certificates), the standalone proxy, the admin
// ports. Every e2e and fault test takes its URLs and HTTP clients from here, so a change of scheme or port
// is made once.
package stackenv

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

const (
	// EnvoyHostPort is Envoy's public listener (test/stack/ports.env ENVOY_PORT).
	EnvoyHostPort = "127.0.0.1:10000"
	// StandaloneURL is fhirwall-proxy's standalone reverse proxy (PROXY_HTTP_PORT).
	StandaloneURL = "http://127.0.0.1:8080"
	// ProxyAdminURL serves fhirwall-proxy's /healthz, /readyz and /metrics (PROXY_ADMIN_PORT).
	ProxyAdminURL = "http://127.0.0.1:9190"
	// EnvoyAdminURL is Envoy's admin interface (ENVOY_ADMIN_PORT).
	EnvoyAdminURL = "http://127.0.0.1:9901"
	// JaegerQueryURL is the trace collector's query API (JAEGER_QUERY_PORT): GET /api/traces/{trace id}.
	JaegerQueryURL = "http://127.0.0.1:16686"
	// HAPIURL is the FHIR server behind fhirwall, for seeding and checks only.
	HAPIURL = "http://127.0.0.1:8090/fhir"
	// PrometheusURL is the Prometheus the alert tests start beside the stack (PROMETHEUS_PORT, prometheus.sh).
	PrometheusURL = "http://127.0.0.1:9490"
)

// Root is the repository's root directory.
func Root() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..")
}

// StateDir is the stack's runtime directory (.fhirwall in the checkout).
func StateDir() string { return filepath.Join(Root(), ".fhirwall") }

// CAFile is the test CA the stack generates for Envoy's listener certificate.
func CAFile() string { return filepath.Join(StateDir(), "tls", "ca.pem") }

// EnvoyTLS reports whether the stack's Envoy listener speaks TLS (its CA exists).
func EnvoyTLS() bool {
	_, err := os.Stat(CAFile())
	return err == nil
}

// EnvoyURL is Envoy's public base URL: https when the stack runs with TLS.
func EnvoyURL() string {
	if EnvoyTLS() {
		return "https://" + EnvoyHostPort
	}
	return "http://" + EnvoyHostPort
}

// RootCAs is a pool holding only the stack's CA; nil when the stack runs without TLS.
func RootCAs() (*x509.CertPool, error) {
	if !EnvoyTLS() {
		return nil, nil
	}
	pem, err := os.ReadFile(CAFile())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", CAFile())
	}
	return pool, nil
}

// Client is an HTTP client that trusts the stack's CA (and nothing else) for Envoy, with a timeout.
func Client(timeout time.Duration) (*http.Client, error) {
	pool, err := RootCAs()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}
