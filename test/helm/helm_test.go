//go:build helm

// Package helm checks the Helm chart in charts/fhirwall: lint, rendered output against golden files, and
// values the schema must refuse. It runs the helm binary built from test/tools/helm (make helm-test).
package helm

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/adapters/priorauth/um"
	fileregistry "github.com/fhirwall/fhirwall/adapters/registry/file"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/test/require"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current chart")

// kubeVersion pins .Capabilities so goldens do not move with the helm version's built-in default.
const kubeVersion = "1.33.0"

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller: no file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func helmBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(repoRoot(t), ".fhirwall", "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		require.Missing(t, bin+" is missing; build it with `make helm-test` or `bash test/tools/helm/build.sh`")
	}
	return bin
}

// helm runs the helm binary from the repository root with its state in a temporary home, so nothing
// from the user's helm config (repositories, plugins) leaks in.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// template renders the chart with the values files, later files winning.
func template(t *testing.T, valuesFiles ...string) (string, string, error) {
	t.Helper()
	args := []string{"template", "fhirwall", "charts/fhirwall", "--namespace", "fhirwall", "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	return helm(t, args...)
}

func TestChartLintsStrict(t *testing.T) {
	// The chart's defaults leave audit.signingKey.existingSecret empty on purpose, so "defaults" is
	// default.yaml: the defaults plus that one value.
	for name, extra := range map[string][]string{
		"default values":        {"-f", "test/helm/testdata/values/default.yaml"},
		"TLS and NetworkPolicy": {"-f", "test/helm/testdata/values/tls-networkpolicy.yaml"},
		"Prior Authorization":   {"-f", "test/helm/testdata/values/prior-auth.yaml"},
		"portal and registry":   {"-f", "test/helm/testdata/values/portal-registry.yaml"},
		"three proxy replicas":  {"-f", "test/helm/testdata/values/replicas-3.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, err := helm(t, append([]string{"lint", "--strict", "charts/fhirwall"}, extra...)...)
			if err != nil {
				t.Fatalf("helm lint --strict: %v\n%s%s", err, out, errOut)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
}

func TestTemplateMatchesGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "test", "helm", "testdata", "values", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files under testdata/values (%v)", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			got, errOut, err := template(t, f)
			if err != nil {
				t.Fatalf("helm template -f %s: %v\n%s", name, err, errOut)
			}
			golden := filepath.Join(repoRoot(t), "test", "helm", "testdata", "golden", name)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (regenerate with: go test -tags helm ./test/helm -update)", err)
			}
			if got != string(want) {
				t.Errorf("helm template -f %s differs from %s; review the chart change and regenerate with -update\n%s",
					name, golden, firstDiff(string(want), got))
			}
		})
	}
}

// TestRenderedConfigLoads: the fhirwall.yaml and clients.yaml the chart renders for every values file are
// accepted by the loaders fhirwall-proxy and fhirwall-xds run at start, each with its own pod's FHIRWALL_*
// environment, including fhirwall-proxy's audit spool check, and the audit paths in it are where the proxy
// StatefulSet mounts the spool volume (a claim of each pod's own, or an emptyDir) and the signing key; the
// decision keys file is a Secret's file mounted read-only; with the prior-auth API, the rules the chart
// renders parse; every secret file (admin tokens, the Keycloak service account, the portal's certificate,
// client secret and session key) is a Secret's file mounted read-only; the portal listens on a port of its
// own that its Service targets. A chart change cannot ship a config the pods would refuse.
func TestRenderedConfigLoads(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "test", "helm", "testdata", "values", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files under testdata/values (%v)", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			out, errOut, err := template(t, f)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, errOut)
			}
			data := configMapData(t, out, "fhirwall-config")
			// Every key of the ConfigMap, as its mount at /etc/fhirwall shows them beside fhirwall.yaml.
			dir := t.TempDir()
			for name, content := range data {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			proxy := podSpec(t, out, "StatefulSet", "fhirwall-proxy")
			if _, err := loadAs(dir, podSpec(t, out, "Deployment", "fhirwall-xds"), config.ForXDS); err != nil {
				t.Errorf("fhirwall-xds refuses the rendered fhirwall.yaml: %v\n%s", err, data["fhirwall.yaml"])
			}
			cfg, err := loadAs(dir, proxy, config.ForProxy)
			if err != nil {
				t.Fatalf("fhirwall-proxy refuses the rendered fhirwall.yaml: %v\n%s", err, data["fhirwall.yaml"])
			}
			if err := cfg.Audit.CheckSpool(); err != nil {
				t.Errorf("fhirwall-proxy refuses the rendered audit section: %v\n%s", err, data["fhirwall.yaml"])
			}
			if got := proxy.mountedVolume(cfg.Audit.Spool.Dir); got == nil || (got.PersistentVolumeClaim == nil && got.EmptyDir == nil) {
				t.Errorf("audit.spool.dir %s is not a PVC or emptyDir mount of fhirwall-proxy (%+v)", cfg.Audit.Spool.Dir, got)
			}
			key := proxy.mountedVolume(filepath.Dir(cfg.Audit.SigningKeyFile))
			if key == nil || key.Secret == nil || !key.Secret.hasPath(filepath.Base(cfg.Audit.SigningKeyFile)) {
				t.Errorf("audit.signing_key_file %s is not a file of a Secret mounted into fhirwall-proxy (%+v)", cfg.Audit.SigningKeyFile, key)
			}
			checkSecretFile(t, proxy, "FHIRWALL_PROXY_DECISION_KEYS_FILE", proxy.env("FHIRWALL_PROXY_DECISION_KEYS_FILE"))
			checkPriorAuthFiles(t, cfg, dir, proxy)
			checkRegistryFiles(t, cfg, dir, proxy)
			checkPortal(t, cfg, out, proxy)
			if strings.Contains(data["fhirwall.yaml"], "PRIVATE KEY") {
				t.Error("the ConfigMap holds a private key")
			}
			if _, err := fileregistry.Parse([]byte(data["clients.yaml"]), config.KnownAPIs); err != nil {
				t.Errorf("fhirwall refuses the rendered clients.yaml: %v", err)
			}
		})
	}
}

// checkPriorAuthFiles: with the prior-auth API, fhirwall-proxy can read what it reads at start. A rules file
// in the ConfigMap (priorAuth.rules) parses as the proxy parses it; one elsewhere is the operator's mount and
// is not checked. The admin token the chart wires (FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE) is a file of a
// Secret mounted read-only with mode 0400, and never a key of the ConfigMap.
func checkPriorAuthFiles(t *testing.T, cfg *config.Config, configDir string, proxy podSpecView) {
	t.Helper()
	if !cfg.HasAPI(config.PriorAuthAPI) {
		return
	}
	if filepath.Dir(cfg.PriorAuth.RulesFile) == configDir {
		if _, err := um.LoadRules(cfg.PriorAuth.RulesFile); err != nil {
			t.Errorf("fhirwall-proxy refuses the rendered prior-auth rules: %v", err)
		}
	}
	if token := proxy.env("FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE"); token != "" {
		checkSecretFile(t, proxy, "FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE", token)
	}
}

// checkRegistryFiles: the shared admin token the chart wires (FHIRWALL_ADMIN_TOKEN_FILE) and the Keycloak
// sync's service account secret are Secret files mounted read-only; registry.import names a clients file of
// the ConfigMap that parses.
func checkRegistryFiles(t *testing.T, cfg *config.Config, configDir string, proxy podSpecView) {
	t.Helper()
	if token := proxy.env("FHIRWALL_ADMIN_TOKEN_FILE"); token != "" {
		checkSecretFile(t, proxy, "FHIRWALL_ADMIN_TOKEN_FILE", token)
	}
	if f := cfg.Registry.Keycloak.ClientSecretFile; f != "" {
		checkSecretFile(t, proxy, "registry.keycloak.client_secret_file", f)
	}
	if f := cfg.Registry.Import; f != "" {
		if filepath.Dir(f) != configDir {
			t.Errorf("registry.import %s is not a file of the chart's ConfigMap", f)
		} else if data, err := os.ReadFile(f); err != nil {
			t.Error(err)
		} else if _, err := fileregistry.Parse(data, config.KnownAPIs); err != nil {
			t.Errorf("fhirwall-proxy refuses the clients registry.import names: %v", err)
		}
	}
}

// checkPortal: with portal.listen, its port is none of the proxy's other listeners, the proxy container
// exposes it as the port named portal, a Service targets that name, and the certificate, key, OIDC client
// secret and session key are Secret files mounted read-only.
func checkPortal(t *testing.T, cfg *config.Config, manifests string, proxy podSpecView) {
	t.Helper()
	p := cfg.Portal
	if p.Listen == "" {
		return
	}
	_, port, err := net.SplitHostPort(p.Listen)
	if err != nil {
		t.Fatalf("portal.listen %q: %v", p.Listen, err)
	}
	for name, addr := range map[string]string{"grpc": cfg.Proxy.GRPC, "local": cfg.Proxy.Local, "admin": cfg.Proxy.Admin, "http": cfg.Proxy.HTTP} {
		if _, other, err := net.SplitHostPort(addr); err == nil && other == port {
			t.Errorf("portal.listen %s shares its port with proxy.%s %s", p.Listen, name, addr)
		}
	}
	if got := proxy.containerPort("portal"); strconv.Itoa(got) != port {
		t.Errorf("the proxy container's port named portal is %d, portal.listen is %s", got, p.Listen)
	}
	svc := manifest[struct {
		Spec struct {
			Ports []struct {
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}](t, manifests, "Service", "fhirwall-portal")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != "portal" {
		t.Errorf("Service fhirwall-portal does not target only the port named portal: %+v", svc.Spec.Ports)
	}
	for key, f := range map[string]string{
		"portal.tls_cert": p.TLSCert, "portal.tls_key": p.TLSKey,
		"portal.client_secret_file": p.ClientSecretFile, "portal.session_key_file": p.SessionKeyFile,
	} {
		checkSecretFile(t, proxy, key, f)
	}
}

// checkSecretFile: file (what names it: key) is a file of a Secret mounted into fhirwall-proxy read-only with
// mode 0400, never a key of the ConfigMap.
func checkSecretFile(t *testing.T, proxy podSpecView, key, file string) {
	t.Helper()
	vol, mount := proxy.mountedVolume(filepath.Dir(file)), proxy.mount(filepath.Dir(file))
	switch {
	case vol == nil || vol.Secret == nil || !vol.Secret.hasPath(filepath.Base(file)):
		t.Errorf("%s %s is not a file of a Secret mounted into fhirwall-proxy (%+v)", key, file, vol)
	case !mount.ReadOnly || vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode != 0o400:
		mode := "unset"
		if vol.Secret.DefaultMode != nil {
			mode = fmt.Sprintf("%#o", *vol.Secret.DefaultMode)
		}
		t.Errorf("%s: its Secret is not mounted read-only with mode 0400 (readOnly %v, defaultMode %s)", key, mount.ReadOnly, mode)
	}
}

// loadAs loads dir/fhirwall.yaml as the pod's program (role) would: with the FHIRWALL_* variables its first
// container sets (a variable from a Secret gets a placeholder, since only its presence is known here), and no
// others.
func loadAs(dir string, pod podSpecView, role config.Role) (*config.Config, error) {
	var names []string
	if len(pod.Containers) > 0 {
		for _, e := range pod.Containers[0].Env {
			if !strings.HasPrefix(e.Name, "FHIRWALL_") {
				continue
			}
			v := e.Value
			if e.ValueFrom != nil {
				v = "placeholder-from-secret"
				if e.Name == "FHIRWALL_JOBS_POSTGRES_DSN" {
					v = "postgres://placeholder@postgres.invalid/fhirwall"
				}
			}
			os.Setenv(e.Name, v)
			names = append(names, e.Name)
		}
	}
	defer func() {
		for _, n := range names {
			os.Unsetenv(n)
		}
	}()
	return config.LoadFor(filepath.Join(dir, "fhirwall.yaml"), role)
}

// manifest decodes the document of kind and name in helm's multi-document output into T.
func manifest[T any](t *testing.T, manifests, kind, name string) T {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var doc struct {
			Kind     string                `yaml:"kind"`
			Metadata struct{ Name string } `yaml:"metadata"`
		}
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			t.Fatalf("no %s %s in the rendered chart", kind, name)
		}
		if err == nil {
			err = node.Decode(&doc)
		}
		if err != nil {
			t.Fatalf("helm output is not YAML: %v", err)
		}
		if doc.Kind == kind && doc.Metadata.Name == name {
			var v T
			if err := node.Decode(&v); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return v
		}
	}
}

// configMapData returns the data of the ConfigMap called name in helm's multi-document output.
func configMapData(t *testing.T, manifests, name string) map[string]string {
	t.Helper()
	return manifest[struct {
		Data map[string]string `yaml:"data"`
	}](t, manifests, "ConfigMap", name).Data
}

// podSpecView is the part of a Deployment's pod template the audit and prior-auth checks read.
type podSpecView struct {
	Containers []struct {
		Env []struct {
			Name      string         `yaml:"name"`
			Value     string         `yaml:"value"`
			ValueFrom map[string]any `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		VolumeMounts []mountView `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []volumeView `yaml:"volumes"`
	// claims are the StatefulSet's volumeClaimTemplates: each pod mounts a claim of its own under the name.
	claims []string
}

type mountView struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type volumeView struct {
	Name                  string         `yaml:"name"`
	PersistentVolumeClaim map[string]any `yaml:"persistentVolumeClaim"`
	EmptyDir              map[string]any `yaml:"emptyDir"`
	Secret                *secretView    `yaml:"secret"`
}

type secretView struct {
	SecretName  string `yaml:"secretName"`
	DefaultMode *int   `yaml:"defaultMode"`
	Items       []struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
	} `yaml:"items"`
}

func (s *secretView) hasPath(name string) bool {
	if len(s.Items) == 0 {
		return true // every key of the Secret is a file
	}
	for _, it := range s.Items {
		if it.Path == name {
			return true
		}
	}
	return false
}

// mountedVolume returns the volume the first container mounts at dir (a claim template as a PVC), or nil.
func (p podSpecView) mountedVolume(dir string) *volumeView {
	if len(p.Containers) == 0 {
		return nil
	}
	for _, m := range p.Containers[0].VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for i := range p.Volumes {
			if p.Volumes[i].Name == m.Name {
				return &p.Volumes[i]
			}
		}
		for _, c := range p.claims {
			if c == m.Name {
				return &volumeView{Name: c, PersistentVolumeClaim: map[string]any{"template": c}}
			}
		}
	}
	return nil
}

// mount returns the first container's mount at dir, or the zero mountView.
func (p podSpecView) mount(dir string) mountView {
	if len(p.Containers) > 0 {
		for _, m := range p.Containers[0].VolumeMounts {
			if m.MountPath == dir {
				return m
			}
		}
	}
	return mountView{}
}

// containerPort returns the first container's port called name, or 0.
func (p podSpecView) containerPort(name string) int {
	if len(p.Containers) > 0 {
		for _, cp := range p.Containers[0].Ports {
			if cp.Name == name {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

// env returns the literal value of the first container's variable name, or "".
func (p podSpecView) env(name string) string {
	if len(p.Containers) > 0 {
		for _, e := range p.Containers[0].Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

// podSpec returns the pod template of the workload (Deployment, StatefulSet) of kind and name in helm's
// multi-document output, with a StatefulSet's claim templates.
func podSpec(t *testing.T, manifests, kind, name string) podSpecView {
	t.Helper()
	w := manifest[workloadView](t, manifests, kind, name)
	p := w.Spec.Template.Spec
	for _, c := range w.Spec.VolumeClaimTemplates {
		p.claims = append(p.claims, c.Metadata.Name)
	}
	return p
}

// workloadView is the part of a Deployment or StatefulSet the replica checks read.
type workloadView struct {
	Spec struct {
		Replicas             *int   `yaml:"replicas"`
		ServiceName          string `yaml:"serviceName"`
		PodManagementPolicy  string `yaml:"podManagementPolicy"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name   string            `yaml:"name"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Spec podSpecView `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestNotesRender: NOTES.txt renders for every values file (helm template skips it, so a broken NOTES.txt
// would first fail at `helm install`), and with the portal and the PostgreSQL registry it tells the operator
// where the portal, DCR and revocation are and how to reach the admin API. The chart is copied with
// NOTES.txt wrapped in a define and printed as a YAML comment, the one form helm template shows.
func TestNotesRender(t *testing.T) {
	root := repoRoot(t)
	chart := filepath.Join(t.TempDir(), "fhirwall")
	if err := os.CopyFS(chart, os.DirFS(filepath.Join(root, "charts", "fhirwall"))); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(chart, "templates", "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"_notes.tpl": `{{- define "test.notes" -}}` + string(notes) + `{{- end -}}`,
		"notes.yaml": `# {{ include "test.notes" . | replace "\n" "\n# " }}` + "\n",
	} {
		if err := os.WriteFile(filepath.Join(chart, "templates", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{
		"portal-registry.yaml": {
			"https://developer.payer.example/register",
			"https://developer.payer.example/oauth/revoke",
			"Service fhirwall-portal.fhirwall.svc:443 -> fhirwall-proxy :9443",
			"https://developer.payer.example/auth/callback",
			"Manage apps through the admin API (token in Secret fhirwall-admin, key token)",
			"Keycloak's clients in realm fhirwall at https://idp.payer.example follow the registry",
		},
		"prior-auth.yaml": {"token in Secret fhirwall-prior-auth-admin, key token"},
	}
	files, err := filepath.Glob(filepath.Join(root, "test", "helm", "testdata", "values", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files under testdata/values (%v)", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			out, errOut, err := helm(t, "template", "fhirwall", chart, "--namespace", "fhirwall",
				"--kube-version", kubeVersion, "-f", f, "--show-only", "templates/notes.yaml")
			if err != nil {
				t.Fatalf("NOTES.txt does not render with %s: %v\n%s", name, err, errOut)
			}
			for _, w := range want[name] {
				if !strings.Contains(out, w) {
					t.Errorf("NOTES.txt with %s does not say %q:\n%s", name, w, out)
				}
			}
		})
	}
}

// TestSchemaRefusesBadValues: each file under testdata/invalid, laid over testdata/invalid-base.yaml (what
// every render needs besides the case's own fault), breaks the schema (or a template's required check) in one
// way; helm must refuse it and name the offending key.
func TestSchemaRefusesBadValues(t *testing.T) {
	cases := []struct {
		file string
		want string // a substring of helm's error naming the key (helm 3.22 reports JSON pointers)
	}{
		{"replicas-not-integer.yaml", "at '/envoy/replicas': got string, want integer"},
		{"wiring-key-in-config.yaml", "at '/config': additional properties 'proxy' not allowed"},
		{"unknown-api.yaml", "at '/config/apis/0/name': value must be one of"},
		{"tls-without-secret.yaml", "at '/tls/secretName'"},
		{"envoy-port-out-of-range.yaml", "at '/envoy/ports/listener': maximum"},
		{"client-without-active.yaml", "at '/clients/0': missing property 'active'"},
		{"networkpolicy-without-fhir-selector.yaml", "fhirServer.podSelector is required"},
		{"signing-key-secret-missing.yaml", "audit.signingKey.existingSecret is required: fhirwall-proxy signs its audit checkpoints with an ed25519 key from a Secret. Create one with `fhirwall audit keygen -out signing.key && kubectl create secret generic fhirwall-audit-signing-key --from-file=signing.key"},
		{"alerts-objective-not-a-ratio.yaml", "at '/metrics/prometheusRule/apis/prior-auth/availabilityObjective': exclusiveMaximum: got 99.9, want 1"},
		{"spool-size-negative.yaml", "at '/proxy/auditSpool/persistence/size': '-2Gi' does not match pattern"},
		{"spool-budget-over-volume.yaml", "proxy.auditSpool.maxBytes 2147483648 is more than 90% of proxy.auditSpool.persistence.size 2Gi"},
		{"spool-dir-in-config.yaml", "at '/config/audit/spool': additional properties 'dir' not allowed"},
		{"proxy-replicas-share-spool.yaml", "proxy.auditSpool.persistence.existingClaim \"fhirwall-spool\" is one claim, but fhirwall-proxy may run 2 replicas and each needs a spool of its own"},
		{"replicas-without-limiter.yaml", "no global rate limiter, but up to 3 fhirwall-proxy and 1 Envoy replicas: each enforces a client's whole tier on its own, so N replicas allow N times the tier. Set rateLimit.deploy=true"},
		{"envoy-replicas-without-limiter.yaml", "no global rate limiter, but up to 1 fhirwall-proxy and 2 Envoy replicas"},
		{"limiter-without-redis.yaml", "rateLimit.deploy needs rateLimit.redis.url"},
		{"limiter-deployed-and-external.yaml", "rateLimit.deploy is true and rateLimit.address \"ratelimit.limits.svc:8081\" is set"},
		{"redis-url-with-scheme.yaml", "at '/rateLimit/redis/url'"},
		{"decision-keys-missing.yaml", "proxy.decisionKeys is required: every fhirwall-proxy replica seals the ext_authz decision"},
		{"decision-keys-two-sources.yaml", "proxy.decisionKeys.existingSecret and proxy.decisionKeys.keys are both set"},
		{"decision-key-not-32-bytes.yaml", "at '/proxy/decisionKeys/keys/0'"},
		{"replicas-without-postgres.yaml", "fhirwall-proxy may run 3 replicas but has no PostgreSQL"},
		{"hpa-min-over-max.yaml", "proxy.autoscaling.minReplicas 5 is more than maxReplicas 3"},
		{"hpa-without-cpu-request.yaml", "envoy.autoscaling.enabled needs envoy.resources.requests.cpu"},
		{"anti-affinity-unknown.yaml", "at '/proxy/podAntiAffinity': value must be one of"},
		{"cors-wildcard-origin.yaml", "at '/config/apis/0/cors/allowed_origins/0'"},
		{"prior-auth-without-rules.yaml", "config.apis has the prior-auth API but priorAuth.rules is not set"},
		{"prior-auth-without-validator.yaml", "config.apis has the prior-auth API but config.prior_auth.validator.url is not set"},
		{"prior-auth-two-rules-files.yaml", "priorAuth.rules and config.prior_auth.rules_file \"/etc/payer/rules.yaml\" are both set"},
		{"prior-auth-relative-rules-file.yaml", "config.prior_auth.rules_file \"prior-auth-rules.yaml\" is relative"},
		{"prior-auth-two-admin-tokens.yaml", "priorAuth.adminTokenSecret and config.prior_auth.admin_token_file"},
		{"prior-auth-rule-unknown-action.yaml", "at '/priorAuth/rules/rules/0/action': value must be one of"},
		{"portal-without-public-url.yaml", "portal.enabled needs config.portal.public_url"},
		{"portal-public-url-http.yaml", "at '/config/portal/public_url': 'http://developer.example.com' does not match pattern"},
		{"portal-file-registry.yaml", "portal.enabled needs config.registry.source postgres"},
		{"portal-port-is-api-port.yaml", "portal.port 9191 is proxy.ports.grpc: the portal is a listener of its own"},
		{"portal-without-tls-secret.yaml", "portal.enabled needs portal.tlsSecret: the portal speaks only TLS"},
		{"portal-without-oidc-client-secret.yaml", "portal.enabled needs portal.oidcClientSecret"},
		{"portal-without-session-key.yaml", "portal.enabled needs portal.sessionKeySecret"},
		{"portal-dcr-without-portal.yaml", "config.portal.dcr.enabled is true but portal.enabled is false"},
		{"portal-listen-in-config.yaml", "at '/config/portal': additional properties 'listen' not allowed"},
		{"registry-import-file-source.yaml", "registry.import needs config.registry.source postgres"},
		{"registry-postgres-without-dsn.yaml", "config.registry.source is postgres but proxy.extraEnv does not set FHIRWALL_JOBS_POSTGRES_DSN"},
		{"registry-keycloak-without-secret.yaml", "config.registry.keycloak.url is set but registry.keycloak.serviceAccountSecret is not"},
		{"registry-keycloak-secret-file-in-config.yaml", "at '/config/registry/keycloak': additional properties 'client_secret_file' not allowed"},
		{"admin-token-file-in-config.yaml", "at '/config': additional properties 'admin' not allowed"},
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".yaml"), func(t *testing.T) {
			td := filepath.Join(repoRoot(t), "test", "helm", "testdata")
			out, errOut, err := template(t, filepath.Join(td, "invalid-base.yaml"), filepath.Join(td, "invalid", c.file))
			if err == nil {
				t.Fatalf("helm template accepted %s:\n%s", c.file, out)
			}
			if !strings.Contains(errOut, c.want) {
				t.Errorf("helm refused %s, but its error does not mention %q:\n%s", c.file, c.want, errOut)
			}
		})
	}
}

// firstDiff shows the first differing line with a little context; golden diffs are reviewed with git.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, wl, gl)
		}
	}
	return "(no line differs; trailing newline?)"
}
