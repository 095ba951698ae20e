package xds

import (
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

const tlsTransportSocket = "envoy.transport_sockets.tls"

// listenerSecret is the listener's certificate as an SDS secret that names files rather than holding them:
// the private key never travels over ADS, and Envoy watches the directory, so a pair replaced there (written
// aside, then moved in) serves new connections without a restart or a new snapshot.
func listenerSecret(t *ir.ListenerTLS) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: t.SecretName,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: fileSource(t.CertFile),
			PrivateKey:       fileSource(t.KeyFile),
			WatchedDirectory: &corev3.WatchedDirectory{Path: filepath.Dir(t.CertFile)},
		}},
	}
}

// downstreamTLS is the listener's transport socket: TLS 1.2 or newer, HTTP/2 offered, client certificates
// required when a client CA is configured.
func downstreamTLS(t *ir.ListenerTLS) *corev3.TransportSocket {
	ctx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{
				Name:      t.SecretName,
				SdsConfig: adsConfigSource(),
			}},
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
	}
	if t.ClientCAFile != "" {
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(t.ClientCAFile)},
		}
	}
	return &corev3.TransportSocket{
		Name:       tlsTransportSocket,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// upstreamTLS verifies the upstream's certificate against the CA and its name; there is no unverified mode.
func upstreamTLS(t *ir.UpstreamTLS) *corev3.TransportSocket {
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: t.ServerName,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: fileSource(t.CAFile),
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: sanType(t.ServerName),
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.ServerName}},
					}},
				},
			},
		},
	}
	return &corev3.TransportSocket{
		Name:       tlsTransportSocket,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

func sanType(name string) tlsv3.SubjectAltNameMatcher_SanType {
	if ir.IsIP(name) {
		return tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	return tlsv3.SubjectAltNameMatcher_DNS
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}
