{{- define "fhirwall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Room is left for the longest component suffix ("-proxy-config" is on a ConfigMap, not a pod). */}}
{{- define "fhirwall.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "fhirwall.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "fhirwall.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fhirwall.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fhirwall.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fhirwall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fhirwall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Call with (dict "root" $ "component" "envoy"). */}}
{{- define "fhirwall.componentSelector" -}}
{{ include "fhirwall.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fhirwall.componentLabels" -}}
{{ include "fhirwall.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fhirwall.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fhirwall.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Call with (dict "image" .Values.proxy.image "root" $). Empty fields fall back to .Values.image. */}}
{{- define "fhirwall.image" -}}
{{- $g := .root.Values.image -}}
{{- $repo := .image.repository | default $g.repository -}}
{{- $digest := .image.digest | default (and (not .image.repository) $g.digest) -}}
{{- if $digest -}}
{{- printf "%s@%s" $repo $digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.image.tag | default $g.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "fhirwall.proxyHost" -}}
{{- printf "%s-proxy.%s.svc.%s" (include "fhirwall.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "fhirwall.xdsHost" -}}
{{- printf "%s-xds.%s.svc.%s" (include "fhirwall.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "fhirwall.fhirServerNamespace" -}}
{{- .Values.fhirServer.service.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "fhirwall.fhirServerURL" -}}
{{- $s := .Values.fhirServer.service -}}
{{- $u := .Values.config.fhir_server.url | default .Values.fhirServer.url -}}
{{- if $u -}}
{{- $u -}}
{{- else -}}
{{- $name := required "fhirServer.service.name (or fhirServer.url) is required: the FHIR server fhirwall fronts" $s.name -}}
{{- printf "http://%s.%s.svc.%s:%d%s" $name (include "fhirwall.fhirServerNamespace" .) .Values.clusterDomain (int $s.port) $s.path -}}
{{- end -}}
{{- end -}}

{{- define "fhirwall.tlsDir" -}}/etc/fhirwall/tls{{- end -}}
{{- define "fhirwall.clientCADir" -}}/etc/fhirwall/client-ca{{- end -}}
{{- define "fhirwall.fhirServerCADir" -}}/etc/fhirwall/fhir-server-ca{{- end -}}

{{/*
fhirwall.yaml: .Values.config with the wiring overlaid (maps merge key by key). The wiring wins because it
must agree with the Services, container ports and mounts this chart creates.
*/}}
{{- define "fhirwall.config" -}}
{{- $p := .Values.proxy.ports -}}
{{- $xds := dict
  "listen" (printf "0.0.0.0:%d" (int .Values.xds.port))
  "node_id" .Values.xds.nodeID
  "envoy_listen" (printf "0.0.0.0:%d" (int .Values.envoy.ports.listener))
  "authz_address" (printf "%s:%d" (include "fhirwall.proxyHost" .) (int $p.grpc))
  "local_address" (printf "%s:%d" (include "fhirwall.proxyHost" .) (int $p.local)) -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" (include "fhirwall.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "fhirwall.tlsDir" .)) -}}
{{- if .Values.tls.clientCASecretName -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" (include "fhirwall.clientCADir" .)) -}}
{{- end -}}
{{- $_ := set $xds "tls" $tls -}}
{{- else if .Values.tls.clientCASecretName -}}
{{- fail "tls.clientCASecretName needs tls.enabled: client certificates are checked by Envoy's TLS listener" -}}
{{- end -}}
{{- $fhir := dict "url" (include "fhirwall.fhirServerURL" .) -}}
{{- if .Values.fhirServer.caSecretName -}}
{{- $_ := set $fhir "ca_file" (printf "%s/ca.crt" (include "fhirwall.fhirServerCADir" .)) -}}
{{- end -}}
{{- $wiring := dict
  "fhir_server" $fhir
  "proxy" (dict
    "grpc" (printf "0.0.0.0:%d" (int $p.grpc))
    "local" (printf "0.0.0.0:%d" (int $p.local))
    "admin" (printf "0.0.0.0:%d" (int $p.admin))
    "http" "")
  "xds" $xds
  "registry" (dict "file" "clients.yaml") -}}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $wiring) -}}
{{- end -}}

{{/* Pod-level scheduling fields shared by the three Deployments; call with the component's values. */}}
{{- define "fhirwall.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "fhirwall.envoyImage" -}}
{{- $i := .Values.envoy.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository $i.tag -}}
{{- end -}}
{{- end -}}
