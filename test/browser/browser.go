// Package browser runs a SMART app the way members run them: the SMART JS client (fhirclient, npm) in
// Debian's headless Chromium, launched standalone through Keycloak's login page, reading the member's data
// from an origin of its own. test/stack/chromium.sh installs Chromium and the npm packages (package-lock.json
// here) into $FHIRWALL_CACHE/browser; driver.mjs (puppeteer-core) drives the browser; this file serves the
// app and runs the driver. The end-to-end tests are behind the e2e build tag.
package browser

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// AppAddr is where the app is served: the demo browser app's origin, which config/fhirwall.yaml lets read
// Patient Access data (apis[].cors.allowed_origins) and the realm registers for patient-app as a redirect URI
// (http://127.0.0.1:9300/callback) and web origin, so the browser's calls to both Keycloak and fhirwall are
// cross-origin calls each of them allows.
const AppAddr = "127.0.0.1:9300"

//go:embed app/launch.html app/callback.html
var appFiles embed.FS

// Tools are the programs and packages a browser run needs.
type Tools struct {
	Chromium    string // Debian's chromium
	Node        string
	NodeModules string // $FHIRWALL_CACHE/browser/node_modules, with fhirclient and puppeteer-core
}

// FindTools locates the tools test/stack/chromium.sh installs; the error says how to install what is missing.
func FindTools() (Tools, error) {
	const fix = "run: bash test/stack/chromium.sh install"
	t := Tools{Chromium: os.Getenv("CHROMIUM")}
	if t.Chromium == "" {
		t.Chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(t.Chromium); err != nil {
		return t, fmt.Errorf("no Chromium at %s (%s)", t.Chromium, fix)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return t, fmt.Errorf("no node on PATH (%s)", fix)
	}
	t.Node = node
	cache := os.Getenv("FHIRWALL_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return t, err
		}
		cache = filepath.Join(home, ".cache", "fhirwall")
	}
	t.NodeModules = filepath.Join(cache, "browser", "node_modules")
	for _, pkg := range []string{"fhirclient/build/fhir-client.js", "puppeteer-core/package.json"} {
		if _, err := os.Stat(filepath.Join(t.NodeModules, pkg)); err != nil {
			return t, fmt.Errorf("no %s under %s (%s)", pkg, t.NodeModules, fix)
		}
	}
	return t, nil
}

// ServeApp serves the app on AppAddr until stop is called: /launch.html, /callback (the app page),
// /fhir-client.js (fhirclient's browser bundle as npm ships it) and /config.json (what the page needs to know
// beyond fhirclient's state).
func ServeApp(tools Tools, config any) (base string, stop func(), err error) {
	cfg, err := json.Marshal(config)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", AppAddr)
	if err != nil {
		return "", nil, fmt.Errorf("the app's origin %s (the demo browser app's origin) is taken: %w", AppAddr, err)
	}
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, err := appFiles.ReadFile("app/" + name)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(b)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /launch.html", page("launch.html"))
	mux.HandleFunc("GET /callback", page("callback.html"))
	mux.HandleFunc("GET /fhir-client.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(tools.NodeModules, "fhirclient", "build", "fhir-client.js"))
	})
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(cfg)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + AppAddr, func() { _ = srv.Close() }, nil
}

// Launch is one run of the driver.
type Launch struct {
	LaunchURL string   `json:"launchURL"`
	Username  string   `json:"username"`
	Password  string   `json:"password"`
	SPKI      []string `json:"spki,omitempty"`
	Chromium  string   `json:"chromium"`
	TimeoutMs int      `json:"timeoutMs"`
}

// Step is one fhirclient call the page made.
type Step struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// Result is what the app page recorded (test/browser/app/callback.html) plus the driver's log of failed
// requests and HTTP errors the browser saw.
type Result struct {
	Error                 string   `json:"error"`
	Steps                 []Step   `json:"steps"`
	Patient               string   `json:"patient"`
	Scope                 string   `json:"scope"`
	HasRefreshToken       bool     `json:"hasRefreshToken"`
	PatientResource       string   `json:"patientResource"`
	EOBPatients           []string `json:"eobPatients"`
	CoverageBeneficiaries []string `json:"coverageBeneficiaries"`
	OtherStatus           any      `json:"otherStatus"`
	RefreshedToken        bool     `json:"refreshedToken"`
	AfterRefresh          string   `json:"afterRefresh"`
	FinalURL              string   `json:"finalURL"`
	Log                   []string `json:"log"`
}

// Step returns the named step; ok is false when the page never got there.
func (r *Result) Step(name string) (Step, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// Run drives Chromium through one launch with driver.mjs.
func Run(ctx context.Context, tools Tools, l Launch) (*Result, error) {
	l.Chromium = tools.Chromium
	if l.TimeoutMs == 0 {
		l.TimeoutMs = 60000
	}
	arg, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, tools.Node, filepath.Join(dir(), "driver.mjs"), string(arg))
	cmd.Env = append(os.Environ(), "FHIRWALL_NODE_MODULES="+tools.NodeModules)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("driver: %w\n%s", err, stderr.String())
	}
	var res Result
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		return nil, fmt.Errorf("driver printed %q: %w (stderr %s)", stdout.String(), err, stderr.String())
	}
	return &res, nil
}

// LeafSPKI dials addr, verifies its certificate against roots and returns the base64 SHA-256 of the leaf's
// SubjectPublicKeyInfo, the form Chromium's --ignore-certificate-errors-spki-list takes.
func LeafSPKI(addr string, roots *x509.CertPool) (string, error) {
	if roots == nil {
		return "", errors.New("no CA pool")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

func dir() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Dir(f)
}
