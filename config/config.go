// Package config is fhirwall's typed configuration: defaults, loading with viper (file + FHIRWALL_*
// environment variables) and validation. Both binaries read the same file.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/viper"
)

// Config is the whole configuration. See config/fhirwall.yaml for a commented example.
type Config struct {
	FHIRServer FHIRServer `mapstructure:"fhir_server"`
	Issuers    []Issuer   `mapstructure:"issuers"`
	APIs       []API      `mapstructure:"apis"`
	Proxy      Proxy      `mapstructure:"proxy"`
	Audit      Audit      `mapstructure:"audit"`
	Policies   Policies   `mapstructure:"policies"`
	XDS        XDS        `mapstructure:"xds"`
}

// FHIRServer is the FHIR server fhirwall fronts.
type FHIRServer struct {
	URL string `mapstructure:"url"` // FHIR base, e.g. http://127.0.0.1:8090/fhir
}

// Issuer is one trusted token issuer.
type Issuer struct {
	URL        string   `mapstructure:"url"`
	Audience   string   `mapstructure:"audience"`
	Algorithms []string `mapstructure:"algorithms"`
}

// API is one exposed FHIR API and its base path.
type API struct {
	Name   string `mapstructure:"name"`
	Prefix string `mapstructure:"prefix"`
}

// Proxy is where fhirwall-proxy listens. An empty address turns that listener off.
type Proxy struct {
	GRPC  string `mapstructure:"grpc"`  // ext_authz + ext_proc for Envoy
	HTTP  string `mapstructure:"http"`  // standalone reverse proxy
	Admin string `mapstructure:"admin"` // /healthz, /readyz
}

// Audit is where audit records go.
type Audit struct {
	Kafka Kafka `mapstructure:"kafka"`
}

// Kafka names the brokers and the topic of the audit stream.
type Kafka struct {
	Brokers []string `mapstructure:"brokers"`
	Topic   string   `mapstructure:"topic"`
}

// Policies: Dir empty means the embedded policy set.
type Policies struct {
	Dir string `mapstructure:"dir"`
}

// XDS is the control plane's own listener and what it tells Envoy.
type XDS struct {
	Listen       string `mapstructure:"listen"`        // ADS gRPC address of fhirwall-xds
	NodeID       string `mapstructure:"node_id"`       // Envoy's node id
	EnvoyListen  string `mapstructure:"envoy_listen"`  // where Envoy accepts clients
	AuthzAddress string `mapstructure:"authz_address"` // where Envoy reaches fhirwall-proxy's gRPC
}

// KnownAPIs are the four CMS-0057-F APIs fhirwall has policies for (more land with later work).
var KnownAPIs = []string{"patient-access", "provider-access", "payer-exchange", "prior-auth"}

// Load reads path (may be empty: defaults and environment only) and validates the result.
func Load(path string) (*Config, error) {
	v, err := read(path)
	if err != nil {
		return nil, err
	}
	return decode(v, path)
}

// Watch calls onChange with the new configuration (or the reason it was refused) whenever the file at path
// changes. Callers keep what they run on when the error is non-nil.
func Watch(path string, onChange func(*Config, error)) error {
	v, err := read(path)
	if err != nil {
		return err
	}
	v.OnConfigChange(func(fsnotify.Event) { onChange(decode(v, path)) })
	v.WatchConfig()
	return nil
}

func read(path string) (*viper.Viper, error) {
	v := viper.New()
	v.SetDefault("fhir_server.url", "http://127.0.0.1:8090/fhir")
	v.SetDefault("proxy.grpc", "127.0.0.1:9191")
	v.SetDefault("proxy.admin", "127.0.0.1:9190")
	v.SetDefault("audit.kafka.brokers", []string{"127.0.0.1:9092"})
	v.SetDefault("audit.kafka.topic", "fhirwall.audit")
	v.SetDefault("xds.listen", "127.0.0.1:18000")
	v.SetDefault("xds.node_id", "fhirwall-envoy")
	v.SetDefault("xds.envoy_listen", "127.0.0.1:10000")
	v.SetDefault("xds.authz_address", "127.0.0.1:9191")
	v.SetEnvPrefix("FHIRWALL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, err)
		}
	}
	return v, nil
}

func decode(v *viper.Viper, path string) (*Config, error) {
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if len(c.APIs) == 0 {
		c.APIs = []API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.FHIRServer.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("fhir_server.url %q: want an http(s) URL", c.FHIRServer.URL))
	}
	if len(c.Issuers) == 0 {
		errs = append(errs, errors.New("issuers: at least one trusted issuer is required"))
	}
	for i, is := range c.Issuers {
		if u, err := url.Parse(is.URL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("issuers[%d].url %q: want the exact issuer URL", i, is.URL))
		}
		if is.Audience == "" {
			errs = append(errs, fmt.Errorf("issuers[%d].audience: required (the aud fhirwall accepts)", i))
		}
	}
	seen := map[string]bool{}
	for i, a := range c.APIs {
		if !contains(KnownAPIs, a.Name) {
			errs = append(errs, fmt.Errorf("apis[%d].name %q: want one of %v", i, a.Name, KnownAPIs))
		}
		if !strings.HasPrefix(a.Prefix, "/") || strings.HasSuffix(a.Prefix, "/") || strings.Contains(a.Prefix, "//") {
			errs = append(errs, fmt.Errorf("apis[%d].prefix %q: want /path without a trailing slash", i, a.Prefix))
		}
		if seen[a.Name] || seen[a.Prefix] {
			errs = append(errs, fmt.Errorf("apis[%d]: %q or %q appears twice", i, a.Name, a.Prefix))
		}
		seen[a.Name], seen[a.Prefix] = true, true
	}
	for name, addr := range map[string]string{"proxy.grpc": c.Proxy.GRPC, "proxy.http": c.Proxy.HTTP, "proxy.admin": c.Proxy.Admin, "xds.listen": c.XDS.Listen, "xds.envoy_listen": c.XDS.EnvoyListen, "xds.authz_address": c.XDS.AuthzAddress} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, addr))
		}
	}
	if c.Proxy.GRPC == "" && c.Proxy.HTTP == "" {
		errs = append(errs, errors.New("proxy: set proxy.grpc (Envoy mode), proxy.http (standalone) or both"))
	}
	if len(c.Audit.Kafka.Brokers) == 0 || c.Audit.Kafka.Topic == "" {
		errs = append(errs, errors.New("audit.kafka: brokers and topic are required; fhirwall does not serve unaudited"))
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
