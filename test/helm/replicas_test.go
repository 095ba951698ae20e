//go:build helm

package helm

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// renderedConfig is the part of the rendered fhirwall.yaml the replica checks read, decoded on its own so the
// checks do not depend on the config package's types.
type renderedConfig struct {
	XDS struct {
		Listen          string   `yaml:"listen"`
		AuthzAddresses  []string `yaml:"authz_addresses"`
		LocalAddresses  []string `yaml:"local_addresses"`
		RatelimitNodeID string   `yaml:"ratelimit_node_id"`
	} `yaml:"xds"`
	RateLimits struct {
		Global *struct {
			Address string `yaml:"address"`
			Domain  string `yaml:"domain"`
			Timeout string `yaml:"timeout"`
		} `yaml:"global"`
	} `yaml:"rate_limits"`
}

type serviceView struct {
	Spec struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name string `yaml:"name"`
			Port int    `yaml:"port"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

func (s serviceView) port(name string) int {
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return p.Port
		}
	}
	return 0
}

// hasDoc reports whether helm's output holds a document of kind and name.
func hasDoc(manifests, kind, name string) bool {
	for _, doc := range strings.Split(manifests, "\n---\n") {
		var d struct {
			Kind     string                `yaml:"kind"`
			Metadata struct{ Name string } `yaml:"metadata"`
		}
		if yaml.Unmarshal([]byte(doc), &d) == nil && d.Kind == kind && d.Metadata.Name == name {
			return true
		}
	}
	return false
}

func renderValues(t *testing.T, name string) (manifests string, cfg renderedConfig) {
	t.Helper()
	out, errOut, err := template(t, filepath.Join(repoRoot(t), "test", "helm", "testdata", "values", name))
	if err != nil {
		t.Fatalf("helm template -f %s: %v\n%s", name, err, errOut)
	}
	if err := yaml.Unmarshal([]byte(configMapData(t, out, "fhirwall-config")["fhirwall.yaml"]), &cfg); err != nil {
		t.Fatalf("rendered fhirwall.yaml: %v", err)
	}
	return out, cfg
}

// TestEnvoyReachesEveryProxyReplica: for every values file, Envoy's ext_authz/ext_proc and API-document
// addresses are the headless Service's DNS name, which resolves to every ready proxy pod (clusterIP None,
// not-ready pods left out, the proxy pods selected, the ports the proxy listens on), and that Service is the
// StatefulSet's, which starts its pods in parallel.
func TestEnvoyReachesEveryProxyReplica(t *testing.T) {
	for _, name := range valuesFiles(t) {
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			out, cfg := renderValues(t, name)
			sts := manifest[workloadView](t, out, "StatefulSet", "fhirwall-proxy")
			if sts.Spec.PodManagementPolicy != "Parallel" {
				t.Errorf("podManagementPolicy %q, want Parallel: replicas are peers", sts.Spec.PodManagementPolicy)
			}
			svc := manifest[serviceView](t, out, "Service", sts.Spec.ServiceName)
			if svc.Spec.ClusterIP != "None" || svc.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s: clusterIP %q publishNotReadyAddresses %v, want headless without not-ready pods",
					sts.Spec.ServiceName, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
			}
			if !maps.Equal(svc.Spec.Selector, sts.Spec.Selector.MatchLabels) {
				t.Errorf("Service %s selects %v, the proxy pods are %v", sts.Spec.ServiceName, svc.Spec.Selector, sts.Spec.Selector.MatchLabels)
			}
			host := sts.Spec.ServiceName + ".fhirwall.svc.cluster.local"
			proxy := sts.Spec.Template.Spec
			for key, c := range map[string]struct {
				got  []string
				port string
			}{"xds.authz_addresses": {cfg.XDS.AuthzAddresses, "grpc"}, "xds.local_addresses": {cfg.XDS.LocalAddresses, "local"}} {
				want := []string{fmt.Sprintf("%s:%d", host, proxy.containerPort(c.port))}
				if !slices.Equal(c.got, want) || svc.port(c.port) != proxy.containerPort(c.port) {
					t.Errorf("%s %v, want %v (Service port %s %d, container port %d)", key, c.got, want, c.port, svc.port(c.port), proxy.containerPort(c.port))
				}
			}
		})
	}
}

// TestEachProxyReplicaOwnsItsSpool: with persistence, the spool is a claim template (one claim per pod, labels
// without the chart version, which a StatefulSet could never change), never one shared claim; an existing
// claim is one replica's only.
func TestEachProxyReplicaOwnsItsSpool(t *testing.T) {
	for _, name := range valuesFiles(t) {
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			out, _ := renderValues(t, name)
			sts := manifest[workloadView](t, out, "StatefulSet", "fhirwall-proxy")
			for _, v := range sts.Spec.Template.Spec.Volumes {
				if v.Name == "audit-spool" && v.PersistentVolumeClaim != nil && (sts.Spec.Replicas == nil || *sts.Spec.Replicas > 1) {
					t.Errorf("more than one replica mount one claim %v", v.PersistentVolumeClaim)
				}
			}
			for _, c := range sts.Spec.VolumeClaimTemplates {
				if _, ok := c.Metadata.Labels["helm.sh/chart"]; ok {
					t.Errorf("claim template %s is labelled with the chart version: the next chart version could not upgrade the StatefulSet", c.Metadata.Name)
				}
			}
		})
	}
}

// TestAutoscaledWorkloadsLeaveReplicasToTheHPA: replicas-3.yaml autoscales the proxy and Envoy, so neither
// workload sets replicas (each upgrade would reset the HPA's count) and an HPA on CPU targets each; without
// autoscaling, the default values render no HPA and keep replicas.
func TestAutoscaledWorkloadsLeaveReplicasToTheHPA(t *testing.T) {
	type hpa struct {
		Spec struct {
			ScaleTargetRef struct{ Kind, Name string } `yaml:"scaleTargetRef"`
			MinReplicas    int                         `yaml:"minReplicas"`
			MaxReplicas    int                         `yaml:"maxReplicas"`
		} `yaml:"spec"`
	}
	out, _ := renderValues(t, "replicas-3.yaml")
	for kind, name := range map[string]string{"StatefulSet": "fhirwall-proxy", "Deployment": "fhirwall-envoy"} {
		if w := manifest[workloadView](t, out, kind, name); w.Spec.Replicas != nil {
			t.Errorf("%s %s sets replicas %d beside its HPA", kind, name, *w.Spec.Replicas)
		}
		h := manifest[hpa](t, out, "HorizontalPodAutoscaler", name)
		if h.Spec.ScaleTargetRef.Kind != kind || h.Spec.ScaleTargetRef.Name != name || h.Spec.MinReplicas < 2 {
			t.Errorf("HPA %s: %+v", name, h.Spec)
		}
	}
	out, _ = renderValues(t, "default.yaml")
	if hasDoc(out, "HorizontalPodAutoscaler", "fhirwall-proxy") {
		t.Error("the default values render an HPA")
	}
	if w := manifest[workloadView](t, out, "StatefulSet", "fhirwall-proxy"); w.Spec.Replicas == nil || *w.Spec.Replicas != 2 {
		t.Errorf("default proxy replicas %v, want 2", w.Spec.Replicas)
	}
}

// TestGlobalLimiterIsWired: with the chart's limiter, fhirwall's rate_limits.global.address is the limiter
// Service's gRPC port, the limiter fetches its limits from the fhirwall-xds Service for the node id fhirwall-xds
// builds them for, counts in the Redis of the values, and only Envoy and the proxy may call it; with a limiter
// of one's own, its address; with none (one replica each, or allowLocalOnly), no global section.
func TestGlobalLimiterIsWired(t *testing.T) {
	type netpol struct {
		Spec struct {
			Ingress []struct {
				From []struct {
					PodSelector struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"podSelector"`
				} `yaml:"from"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	for _, c := range []struct {
		values, address string
		deployed        bool
	}{
		{"replicas-3.yaml", "fhirwall-ratelimit.fhirwall.svc.cluster.local:8081", true},
		{"default.yaml", "fhirwall-ratelimit.fhirwall.svc.cluster.local:8081", true},
		{"portal-registry.yaml", "ratelimit.shared-limits.svc.cluster.local:8081", false},
		{"prior-auth.yaml", "", false},
		{"whole-config.yaml", "", false},
	} {
		t.Run(strings.TrimSuffix(c.values, ".yaml"), func(t *testing.T) {
			out, cfg := renderValues(t, c.values)
			g := cfg.RateLimits.Global
			switch {
			case c.address == "" && g != nil:
				t.Fatalf("rate_limits.global %+v, want none", *g)
			case c.address == "":
				if cfg.XDS.RatelimitNodeID != "" || hasDoc(out, "Deployment", "fhirwall-ratelimit") {
					t.Error("no global limiter, but a limiter node id or Deployment is rendered")
				}
				return
			case g == nil || g.Address != c.address || g.Domain != "fhirwall" || g.Timeout == "":
				t.Fatalf("rate_limits.global %+v, want address %s, domain fhirwall and a timeout", g, c.address)
			}
			if cfg.XDS.RatelimitNodeID == "" {
				t.Error("xds.ratelimit_node_id is empty with a global limiter")
			}
			if hasDoc(out, "Deployment", "fhirwall-ratelimit") != c.deployed {
				t.Fatalf("limiter Deployment rendered %v, want %v", !c.deployed, c.deployed)
			}
			if !c.deployed {
				return
			}
			svc := manifest[serviceView](t, out, "Service", "fhirwall-ratelimit")
			if want := fmt.Sprintf("fhirwall-ratelimit.fhirwall.svc.cluster.local:%d", svc.port("grpc")); g.Address != want {
				t.Errorf("rate_limits.global.address %s, the limiter's Service is %s", g.Address, want)
			}
			pod := podSpec(t, out, "Deployment", "fhirwall-ratelimit")
			xdsSvc := manifest[serviceView](t, out, "Service", "fhirwall-xds")
			for name, want := range map[string]string{
				"CONFIG_TYPE":                "GRPC_XDS_SOTW",
				"CONFIG_GRPC_XDS_SERVER_URL": fmt.Sprintf("fhirwall-xds.fhirwall.svc.cluster.local:%d", xdsSvc.port("grpc")),
				"CONFIG_GRPC_XDS_NODE_ID":    cfg.XDS.RatelimitNodeID,
				"REDIS_SOCKET_TYPE":          "tcp",
				"USE_STATSD":                 "false",
				"GRPC_PORT":                  fmt.Sprint(pod.containerPort("grpc")),
			} {
				if got := pod.env(name); got != want {
					t.Errorf("limiter env %s=%q, want %q", name, got, want)
				}
			}
			if pod.env("REDIS_URL") == "" {
				t.Error("limiter env REDIS_URL is empty")
			}
			if !hasDoc(out, "NetworkPolicy", "fhirwall-ratelimit") {
				if c.values == "replicas-3.yaml" {
					t.Error("networkPolicy.enabled but no NetworkPolicy for the limiter")
				}
				return
			}
			var from []string
			for _, in := range manifest[netpol](t, out, "NetworkPolicy", "fhirwall-ratelimit").Spec.Ingress {
				for _, f := range in.From {
					from = append(from, f.PodSelector.MatchLabels["app.kubernetes.io/component"])
				}
			}
			if slices.Sort(from); !slices.Equal(from, []string{"envoy", "proxy"}) {
				t.Errorf("the limiter admits %v, want only envoy and proxy", from)
			}
		})
	}
}

func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "test", "helm", "testdata", "values", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files under testdata/values (%v)", err)
	}
	for i, f := range files {
		files[i] = filepath.Base(f)
	}
	return files
}
