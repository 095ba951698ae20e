// Package alerts renders the alert and recording rules the Helm chart ships (charts/fhirwall,
// metrics.prometheusRule) as the rules file Prometheus loads; its tests run promtool on them, and the fault
// test (test/faults) loads the same file into a real Prometheus.
package alerts

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultValues is the values file the rules are rendered with: the golden test's defaults, with the rules on.
const DefaultValues = "test/helm/testdata/values/default.yaml"

// Render runs helm (the binary at helm) on the chart in the checkout at root with the values files given
// (relative to root; later ones win) and metrics.prometheusRule.enabled=true, and returns the PrometheusRule's
// spec: {groups: ...}, a plain Prometheus rules file.
func Render(helm, root string, valuesFiles ...string) ([]byte, error) {
	args := []string{"template", "fhirwall", "charts/fhirwall", "--namespace", "fhirwall", "--kube-version", "1.33.0",
		"--show-only", "templates/prometheusrule.yaml", "--set", "metrics.prometheusRule.enabled=true"}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	home, err := os.MkdirTemp("", "fhirwall-helm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cmd := exec.Command(helm, args...)
	cmd.Dir = root
	// helm's own state in a scratch home: nothing from the user's helm config leaks in.
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	var doc struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups yaml.Node `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(out.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("the chart's PrometheusRule: %w", err)
	}
	if doc.Kind != "PrometheusRule" || doc.Spec.Groups.Kind != yaml.SequenceNode {
		return nil, errors.New("the chart rendered no PrometheusRule with spec.groups")
	}
	return yaml.Marshal(map[string]*yaml.Node{"groups": &doc.Spec.Groups})
}
