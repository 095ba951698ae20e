package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/selftest"
)

// selftestCmd is `fhirwall selftest --against URL -config FILE -key FILE -out DIR`: the checks of
// internal/selftest against a live deployment, written as matrix.md, matrix.html and matrix.signed.json
// (signed with the audit signing key). Exit 0: no check failed (gaps, from skipped checks, are listed; -strict
// makes them fail too); 1: a check failed; 2: usage or an unreadable file.
func selftestCmd(ctx context.Context, args []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("fhirwall selftest", flag.ContinueOnError)
	against := fs.String("against", "", "the deployment's public base URL (Envoy's listener or the standalone proxy), e.g. https://fhir.payer.example")
	configFile := fs.String("config", "", "selftest.yaml: the test clients and API paths (docs/selftest.md)")
	caFile := fs.String("ca", "", "PEM CA bundle to trust for the deployment and the token endpoint (default: the system's)")
	keyFile := fs.String("key", "", "the audit signing key (private; `fhirwall audit keygen`), which signs the matrix")
	outDir := fs.String("out", "", "directory for matrix.md, matrix.html and matrix.signed.json")
	only := fs.String("only", "", "comma-separated check names or requirement ids to run (default: all)")
	kafkaBrokers := fs.String("audit-kafka", "", "Kafka brokers of the audit topic, comma-separated: check that this run's requests left their records")
	topic := fs.String("audit-topic", "fhirwall.audit", "the audit topic")
	auditWait := fs.Duration("audit-wait", 60*time.Second, "how long to wait for the records to reach the topic")
	burst := fs.Int("rate-limit-burst", 0, "send one burst of N requests (config rate_limit) and expect 429s; 0: the rate-limit check skips")
	timeout := fs.Duration("timeout", 30*time.Second, "per request")
	allowWrites := fs.Bool("allow-writes", false, "run the one check that writes: a prior-auth request for a synthetic member (config prior_auth_writes)")
	strict := fs.Bool("strict", false, "exit 1 on a gap too (a requirement whose checks all skipped), not only on a failure")
	list := fs.Bool("list", false, "list the checks and the requirements they prove, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if *list {
		for _, c := range selftest.Checks() {
			fmt.Fprintf(out, "%-48s %s\n", c.Name, strings.Join(c.Requirements, ","))
		}
		return 0, nil
	}
	switch {
	case fs.NArg() > 0:
		return 2, fmt.Errorf("selftest: unexpected argument %q (flags only)", fs.Arg(0))
	case *against == "":
		return 2, errors.New("selftest: --against URL is required (the deployment's public base, e.g. https://fhir.payer.example)")
	case *configFile == "":
		return 2, errors.New("selftest: -config FILE is required (selftest.yaml; docs/selftest.md)")
	case *keyFile == "":
		return 2, errors.New("selftest: -key FILE is required (the audit signing key, which signs the matrix)")
	case *outDir == "":
		return 2, errors.New("selftest: -out DIR is required")
	case *burst < 0 || *burst > 10000:
		return 2, errors.New("selftest: -rate-limit-burst N wants 1..10000 (one burst; 0 skips the check)")
	}
	base, err := url.Parse(*against)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" || base.RawQuery != "" || base.User != nil {
		return 2, fmt.Errorf("selftest: --against %q: want http(s)://host[:port][/path], no query or user info", *against)
	}
	cfg, err := selftest.LoadConfig(*configFile)
	if err != nil {
		return 2, err
	}
	key, err := audit.LoadSigningKey(*keyFile)
	if err != nil {
		return 2, fmt.Errorf("selftest: -key: %w", err)
	}
	hc, err := httpClient(*caFile, *timeout)
	if err != nil {
		return 2, err
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return 2, err
	}
	o := selftest.Options{Base: base, HTTP: hc, Config: cfg, AuditTopic: *topic, AuditWait: *auditWait, RateLimitBurst: *burst, AllowWrites: *allowWrites}
	if *kafkaBrokers != "" {
		o.AuditKafka = strings.Split(*kafkaBrokers, ",")
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	results, err := selftest.Run(ctx, o)
	if err != nil {
		return 2, fmt.Errorf("selftest: %w", err)
	}
	if len(results) == 0 {
		return 2, fmt.Errorf("selftest: -only %q names no check (fhirwall selftest -list)", *only)
	}
	m := selftestMatrix(results, base, time.Now())
	failed := 0
	for _, r := range results {
		fmt.Fprintf(out, "%-4s %-48s %s\n", r.Outcome, r.Name, r.Detail)
		if r.Outcome == selftest.Fail {
			failed++
		}
	}
	if err := writeMatrix(*outDir, m, key); err != nil {
		return 2, err
	}
	c := m.Counts()
	fmt.Fprintf(out, "%d requirements: %d met, %d failed, %d gaps; wrote %s\n", len(m.Rows), c[evidence.Met], c[evidence.Failed], c[evidence.Gap],
		filepath.Join(*outDir, "matrix.{md,html,signed.json}"))
	if failed > 0 || c[evidence.Failed] > 0 || *strict && c[evidence.Gap] > 0 {
		return 1, nil
	}
	return 0, nil
}

// selftestMatrix builds the matrix of the requirements the run's checks name, in the table's order.
func selftestMatrix(results []selftest.Result, base *url.URL, now time.Time) evidence.Matrix {
	var named []string
	var checks []evidence.Check
	for _, r := range results {
		named = append(named, r.Requirements...)
		checks = append(checks, evidence.Check{Name: "selftest " + r.Name, Requirements: r.Requirements,
			Outcome: r.Outcome, Detail: r.Detail})
	}
	var reqs []evidence.Requirement
	for _, req := range evidence.Requirements() {
		if slices.Contains(named, req.ID) {
			reqs = append(reqs, req)
		}
	}
	versions := map[string]string{"go": runtime.Version(), "target": base.Redacted()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				versions["fhirwall"] = s.Value
			}
		}
	}
	return evidence.Build("fhirwall self-test", "selftest against "+base.Redacted(), reqs, checks, versions, now.UTC())
}

func writeMatrix(dir string, m evidence.Matrix, key ed25519.PrivateKey) error {
	signed, err := evidence.Sign(m, key)
	if err != nil {
		return fmt.Errorf("selftest: signing the matrix: %w", err)
	}
	for name, b := range map[string][]byte{"matrix.md": m.Markdown(), "matrix.html": m.HTML(), "matrix.signed.json": signed} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// httpClient trusts caFile only (or the system's roots) and never follows a redirect: a check judges the
// answer it got, and a token never travels to where a redirect points.
func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("selftest: -ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("selftest: -ca %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// evidenceCmd is `fhirwall evidence verify -key FILE.pub[,…] FILE`: the signed matrix is intact under one
// of the keys (exit 0), or refused (exit 1).
func evidenceCmd(args []string, out io.Writer) (int, error) {
	if len(args) == 0 || args[0] != "verify" {
		return 2, errors.New("evidence: the one command is verify: fhirwall evidence verify -key FILE.pub[,…] matrix.signed.json")
	}
	fs := flag.NewFlagSet("fhirwall evidence verify", flag.ContinueOnError)
	keyFiles := fs.String("key", "", "the audit signing key's public half (FILE.pub), or several comma-separated")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if *keyFiles == "" || fs.NArg() != 1 {
		return 2, errors.New("evidence verify: -key FILE.pub[,…] and one signed matrix file are required")
	}
	var keys []ed25519.PublicKey
	for _, f := range strings.Split(*keyFiles, ",") {
		k, err := audit.LoadVerifyKey(f)
		if err != nil {
			return 2, err
		}
		keys = append(keys, k)
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return 2, err
	}
	m, err := evidence.Verify(b, keys)
	if err != nil {
		fmt.Fprintf(out, "REFUSED: %s: %v\n", fs.Arg(0), err)
		return 1, nil
	}
	c := m.Counts()
	fmt.Fprintf(out, "intact: %d requirements, %d met (%s, %s)\n", len(m.Rows), c[evidence.Met], m.Scope, m.Generated.UTC().Format(time.RFC3339))
	return 0, nil
}
