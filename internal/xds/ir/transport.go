package ir

import (
	"errors"
	"path/filepath"
	"time"
)

// ListenerTLS terminates TLS at the listener with a certificate and key Envoy reads from files. They reach
// Envoy as an SDS secret naming the files, and Envoy watches the files, so a rotated pair is served to new
// connections without a restart or a new snapshot.
type ListenerTLS struct {
	SecretName string
	CertFile   string
	KeyFile    string
	// ClientCAFile, when set, requires client certificates signed by it (mutual TLS).
	ClientCAFile string
}

// UpstreamTLS makes Envoy speak TLS to a cluster, verifying the server against CAFile and ServerName.
type UpstreamTLS struct {
	ServerName string
	CAFile     string
}

// Validate checks the listener's TLS files.
func (t *ListenerTLS) Validate() error {
	var errs []error
	if !nameRE.MatchString(t.SecretName) {
		errs = append(errs, invalid("listener tls secret name %q", t.SecretName))
	}
	for what, f := range map[string]string{"cert_file": t.CertFile, "key_file": t.KeyFile} {
		if !filepath.IsAbs(f) {
			errs = append(errs, invalid("listener tls %s %q must be an absolute path (Envoy resolves it, not fhirwall)", what, f))
		}
	}
	if t.ClientCAFile != "" && !filepath.IsAbs(t.ClientCAFile) {
		errs = append(errs, invalid("listener tls client_ca_file %q must be an absolute path", t.ClientCAFile))
	}
	if t.CertFile != "" && t.KeyFile != "" && filepath.Dir(t.CertFile) != filepath.Dir(t.KeyFile) {
		// Envoy reloads the pair together when the directory changes; split across two it could pair a new
		// certificate with an old key.
		errs = append(errs, invalid("listener tls cert_file and key_file must be in the same directory"))
	}
	return errors.Join(errs...)
}

// Validate checks a cluster's upstream TLS.
func (t *UpstreamTLS) Validate(cluster string) error {
	var errs []error
	if t.ServerName == "" || (!isIP(t.ServerName) && !hostnameRE.MatchString(t.ServerName)) {
		errs = append(errs, invalid("cluster %q: tls server name %q", cluster, t.ServerName))
	}
	if !filepath.IsAbs(t.CAFile) {
		// No CA means no verification; fhirwall never talks TLS to an upstream it does not verify.
		errs = append(errs, invalid("cluster %q: tls ca_file %q must be an absolute path", cluster, t.CAFile))
	}
	return errors.Join(errs...)
}

// Outlier ejects an upstream host after consecutive failures to reach it (connect failures, resets,
// timeouts: errors Envoy sees itself), so requests fail fast (503) while it is down and return by themselves
// once it answers again. HTTP 5xx answers do not count: a client able to make the server fail a few
// requests must not be able to take the API down for everyone.
type Outlier struct {
	ConsecutiveLocalFailures uint32
	// ConsecutiveGatewayFailures, when set, also ejects a host after that many 502/503/504 answers in a row
	// (for gRPC: UNAVAILABLE and the like from a replica shutting down). Only for upstreams whose failures no
	// client can provoke: fhirwall-proxy's, never the FHIR server's.
	ConsecutiveGatewayFailures uint32
	Interval                   time.Duration
	BaseEjection               time.Duration
	MaxEjectionPercent         uint32
}

// Validate checks the outlier detection of cluster.
func (o *Outlier) Validate(cluster string) error {
	var errs []error
	if o.ConsecutiveLocalFailures == 0 {
		errs = append(errs, invalid("cluster %q: outlier detection ejects on nothing", cluster))
	}
	if o.Interval < 100*time.Millisecond || o.BaseEjection < 100*time.Millisecond {
		errs = append(errs, invalid("cluster %q: outlier interval and base ejection must be at least 100ms", cluster))
	}
	if o.MaxEjectionPercent == 0 || o.MaxEjectionPercent > 100 {
		errs = append(errs, invalid("cluster %q: outlier max ejection percent %d outside [1, 100]", cluster, o.MaxEjectionPercent))
	}
	return errors.Join(errs...)
}
