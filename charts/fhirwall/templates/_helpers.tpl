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
{{- define "fhirwall.auditSpoolDir" -}}/var/lib/fhirwall/audit-spool{{- end -}}
{{/* Not under /etc/fhirwall: that is the ConfigMap's mount. */}}
{{- define "fhirwall.auditKeyDir" -}}/etc/fhirwall-audit-key{{- end -}}

{{/* The signing key's Secret; the only way to give fhirwall-proxy its key, so rendering stops without it. */}}
{{- define "fhirwall.auditSigningKeySecret" -}}
{{- required (printf "audit.signingKey.existingSecret is required: fhirwall-proxy signs its audit checkpoints with an ed25519 key from a Secret. Create one with `fhirwall audit keygen -out signing.key && kubectl create secret generic fhirwall-audit-signing-key --from-file=signing.key --namespace %s`, keep signing.key.pub for `fhirwall audit verify`, and set audit.signingKey.existingSecret=fhirwall-audit-signing-key" .Release.Namespace) .Values.audit.signingKey.existingSecret -}}
{{- end -}}

{{/* persistence.size as a quantity string: a bare number from a values file arrives as a float64. */}}
{{- define "fhirwall.auditSpoolSize" -}}
{{- $s := .Values.proxy.auditSpool.persistence.size -}}
{{- ternary $s (printf "%d" (int64 $s)) (kindIs "string" $s) -}}
{{- end -}}

{{/*
The spool's claim when proxy.auditSpool.persistence.existingClaim names one: a single claim, so a single pod.
Otherwise each pod gets its own from the StatefulSet's volumeClaimTemplates.
*/}}
{{- define "fhirwall.auditSpoolClaim" -}}
{{- $claim := .Values.proxy.auditSpool.persistence.existingClaim -}}
{{- $max := int (include "fhirwall.maxReplicas" .Values.proxy) -}}
{{- if and $claim (gt $max 1) -}}
{{- fail (printf "proxy.auditSpool.persistence.existingClaim %q is one claim, but fhirwall-proxy may run %d replicas and each needs a spool of its own (the spool takes an exclusive flock, and each replica keeps its own hash chain). Drop existingClaim so every pod gets its own claim from the StatefulSet, or keep proxy.replicas at 1 without autoscaling" $claim $max) -}}
{{- end -}}
{{- $claim -}}
{{- end -}}

{{/*
A Kubernetes quantity as a byte count, for the integer forms the schema admits (2Gi, 1500M, 2147483648).
*/}}
{{- define "fhirwall.quantityBytes" -}}
{{- $q := toString . -}}
{{- $n := regexFind "^[0-9]+" $q -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000
  "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 -}}
{{- $unit := trimPrefix $n $q -}}
{{- if or (not $n) (not (hasKey $units $unit)) -}}
{{- fail (printf "%q: want a whole number with an optional unit (Ki, Mi, Gi, Ti, Pi, k, M, G, T, P)" $q) -}}
{{- end -}}
{{- mul (int64 $n) (get $units $unit) -}}
{{- end -}}

{{/*
The spool budget must fit the volume it is on: past the disk's end audit writes fail outright, where past
the budget fhirwall-proxy refuses requests with 503 and recovers once Kafka catches up. 90% leaves ext4's
root-reserved 5% and filesystem overhead. An existingClaim's size is unknown here and is the operator's.
*/}}
{{- define "fhirwall.auditSpoolMaxBytes" -}}
{{- $s := .Values.proxy.auditSpool -}}
{{- $max := int64 $s.maxBytes -}}
{{- if not (and $s.persistence.enabled $s.persistence.existingClaim) -}}
{{- $size := int64 (include "fhirwall.quantityBytes" (include "fhirwall.auditSpoolSize" .)) -}}
{{- if gt (mul $max 10) (mul $size 9) -}}
{{- fail (printf "proxy.auditSpool.maxBytes %d is more than 90%% of proxy.auditSpool.persistence.size %s (%d bytes): a spool that fills its disk fails audit writes instead of refusing requests with 503; lower maxBytes or raise size" $max (include "fhirwall.auditSpoolSize" .) $size) -}}
{{- end -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/* Not under /etc/fhirwall: that is the ConfigMap's mount. */}}
{{- define "fhirwall.priorAuthAdminTokenDir" -}}/etc/fhirwall-prior-auth-admin{{- end -}}
{{/* The ConfigMap key of priorAuth.rules, beside fhirwall.yaml: prior_auth.rules_file resolves against it. */}}
{{- define "fhirwall.priorAuthRulesFile" -}}prior-auth-rules.yaml{{- end -}}

{{/* "true" when config.apis has the Prior Authorization API (config.PriorAuthAPI), else empty. */}}
{{- define "fhirwall.priorAuthAPI" -}}
{{- range .Values.config.apis -}}
{{- if eq (toString .name) "prior-auth" -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
config.prior_auth completed by the chart: rules_file names the ConfigMap's prior-auth-rules.yaml when the
operator gave none. Rendering stops where fhirwall-proxy would refuse to start (no rules, no validator) or
where two values would disagree on which file is read.
*/}}
{{- define "fhirwall.priorAuthConfig" -}}
{{- $pa := deepCopy (.Values.config.prior_auth | default dict) -}}
{{- $rulesFile := $pa.rules_file | default "" -}}
{{- $chartRules := include "fhirwall.priorAuthRulesFile" . -}}
{{- if and .Values.priorAuth.rules $rulesFile (ne $rulesFile $chartRules) -}}
{{- fail (printf "priorAuth.rules and config.prior_auth.rules_file %q are both set: the chart renders priorAuth.rules as %s beside fhirwall.yaml; drop rules_file to use it, or drop priorAuth.rules to read your own mounted file" $rulesFile $chartRules) -}}
{{- end -}}
{{- if and $rulesFile (not .Values.priorAuth.rules) (not (isAbs $rulesFile)) -}}
{{- fail (printf "config.prior_auth.rules_file %q is relative, so fhirwall reads it beside fhirwall.yaml in the chart's ConfigMap, which holds rules only from priorAuth.rules: set priorAuth.rules (and drop rules_file), or give the absolute path of your own mounted file" $rulesFile) -}}
{{- end -}}
{{- if and $pa.admin_token_file (not (isAbs (toString $pa.admin_token_file))) -}}
{{- fail (printf "config.prior_auth.admin_token_file %q is relative, so fhirwall reads it beside fhirwall.yaml in the chart's ConfigMap, where no token may be: set priorAuth.adminTokenSecret instead" $pa.admin_token_file) -}}
{{- end -}}
{{- if and .Values.priorAuth.adminTokenSecret $pa.admin_token_file -}}
{{- fail (printf "priorAuth.adminTokenSecret and config.prior_auth.admin_token_file %q are both set: the chart mounts the Secret and points FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE at it, which would win silently; set one" $pa.admin_token_file) -}}
{{- end -}}
{{- if include "fhirwall.priorAuthAPI" . -}}
{{- if not (or .Values.priorAuth.rules $rulesFile) -}}
{{- fail "config.apis has the prior-auth API but priorAuth.rules is not set: fhirwall-proxy decides every item of a prior-auth request by these rules and does not start without them. Copy config/prior-auth-rules.yaml from the fhirwall repository under priorAuth.rules (its top-level key rules: becomes priorAuth.rules.rules) and adapt it; or mount your own file (proxy.extraVolumes) and set config.prior_auth.rules_file to its path" -}}
{{- end -}}
{{- if not (dig "validator" "url" "" $pa) -}}
{{- fail "config.apis has the prior-auth API but config.prior_auth.validator.url is not set: every PAS request Bundle is validated against Da Vinci PAS 2.0.1 before it is accepted, by a validator service this chart does not deploy (test/tools/fhir-validator serve mode, see the chart README); set its http(s) URL" -}}
{{- end -}}
{{- if not $rulesFile -}}
{{- $_ := set $pa "rules_file" $chartRules -}}
{{- end -}}
{{- end -}}
{{- toYaml $pa -}}
{{- end -}}

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
  "authz_addresses" (list (printf "%s:%d" (include "fhirwall.proxyHeadlessHost" .) (int $p.grpc)))
  "local_addresses" (list (printf "%s:%d" (include "fhirwall.proxyHeadlessHost" .) (int $p.local))) -}}
{{- include "fhirwall.checkAutoscaling" (dict "name" "proxy" "v" .Values.proxy) -}}
{{- include "fhirwall.checkAutoscaling" (dict "name" "envoy" "v" .Values.envoy) -}}
{{- $_ := include "fhirwall.decisionKeysSecret" . -}}
{{- include "fhirwall.checkSharedState" . -}}
{{- $global := include "fhirwall.rateLimitGlobal" . | fromYaml -}}
{{- if $global -}}
{{- $_ := set $xds "ratelimit_node_id" .Values.rateLimit.nodeID -}}
{{- end -}}
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
  "registry" (include "fhirwall.registryWiring" . | fromYaml)
  "audit" (dict
    "spool" (dict
      "dir" (include "fhirwall.auditSpoolDir" .)
      "max_bytes" (int64 (include "fhirwall.auditSpoolMaxBytes" .)))
    "signing_key_file" (printf "%s/signing.key" (include "fhirwall.auditKeyDir" .))) -}}
{{- $config := deepCopy .Values.config -}}
{{- $priorAuth := include "fhirwall.priorAuthConfig" . | fromYaml -}}
{{- if $priorAuth -}}
{{- $_ := set $config "prior_auth" $priorAuth -}}
{{- end -}}
{{- with include "fhirwall.portalWiring" . | fromYaml -}}
{{- $_ := set $wiring "portal" . -}}
{{- end -}}
{{- if $global -}}
{{- $_ := set $wiring "rate_limits" (dict "global" $global) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $config $wiring) -}}
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

{{/* Not under /etc/fhirwall: that is the ConfigMap's mount. One directory per Secret, each mounted read-only. */}}
{{- define "fhirwall.adminTokenDir" -}}/etc/fhirwall-admin{{- end -}}
{{- define "fhirwall.keycloakSecretDir" -}}/etc/fhirwall-keycloak{{- end -}}
{{- define "fhirwall.portalTLSDir" -}}/etc/fhirwall-portal-tls{{- end -}}
{{- define "fhirwall.portalOIDCDir" -}}/etc/fhirwall-portal-oidc{{- end -}}
{{- define "fhirwall.portalSessionDir" -}}/etc/fhirwall-portal-session{{- end -}}

{{- define "fhirwall.registrySource" -}}
{{- dig "registry" "source" "file" (.Values.config | default dict) -}}
{{- end -}}

{{/* "true" when the env list .env sets the variable .name, else empty. */}}
{{- define "fhirwall.setsEnv" -}}
{{- $name := .name -}}
{{- range .env -}}
{{- if eq (toString .name) $name -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
config.registry completed by the chart: registry.file is the ConfigMap's clients.yaml, registry.import names
it when registry.import is on, and registry.keycloak.client_secret_file is the mounted service account
Secret. Rendering stops where fhirwall-proxy or fhirwall-xds would refuse to start, or where a Secret would
be mounted for nothing.
*/}}
{{- define "fhirwall.registryWiring" -}}
{{- $source := include "fhirwall.registrySource" . -}}
{{- $kc := dig "registry" "keycloak" dict (.Values.config | default dict) -}}
{{- $kcSecret := .Values.registry.keycloak.serviceAccountSecret -}}
{{- $w := dict "file" "clients.yaml" -}}
{{- if eq $source "postgres" -}}
{{- $dsnEnv := "FHIRWALL_JOBS_POSTGRES_DSN" -}}
{{- if not .Values.config.jobs.postgres_dsn -}}
{{- if not (include "fhirwall.setsEnv" (dict "env" .Values.proxy.extraEnv "name" $dsnEnv)) -}}
{{- fail (printf "config.registry.source is postgres but proxy.extraEnv does not set %s: the app registry lives in PostgreSQL, and fhirwall-proxy refuses a fhirwall.yaml with registry.source postgres and no jobs.postgres_dsn. Set %s from a Secret (valueFrom.secretKeyRef) in proxy.extraEnv (fhirwall-xds never opens the registry and needs no DSN)" $dsnEnv $dsnEnv) -}}
{{- end -}}
{{- end -}}
{{- if .Values.registry.import -}}
{{- $_ := set $w "import" "clients.yaml" -}}
{{- end -}}
{{- else -}}
{{- if .Values.registry.import -}}
{{- fail "registry.import needs config.registry.source postgres: the file registry reads clients.yaml in place, and fhirwall-proxy refuses registry.import beside it" -}}
{{- end -}}
{{- if $kc.url -}}
{{- fail "config.registry.keycloak.url needs config.registry.source postgres: only the PostgreSQL registry keeps Keycloak's clients in sync (the file registry's clients are the realm's own)" -}}
{{- end -}}
{{- end -}}
{{- if and $kc.url (not $kcSecret) -}}
{{- fail (printf "config.registry.keycloak.url is set but registry.keycloak.serviceAccountSecret is not: the registry signs in to Keycloak's admin API as %s with a secret from a Secret. Create one with `kubectl create secret generic fhirwall-keycloak-registry --from-literal=client-secret=... --namespace %s` and set registry.keycloak.serviceAccountSecret=fhirwall-keycloak-registry" ($kc.client_id | default "config.registry.keycloak.client_id") .Release.Namespace) -}}
{{- end -}}
{{- if and $kcSecret (not $kc.url) -}}
{{- fail "registry.keycloak.serviceAccountSecret is set but config.registry.keycloak.url is not: without the url there is no Keycloak sync to use the secret; set url, realm and client_id under config.registry.keycloak, or drop the Secret" -}}
{{- end -}}
{{- if $kc.url -}}
{{- if not (and $kc.realm $kc.client_id) -}}
{{- fail "config.registry.keycloak.url is set but realm or client_id is not: the registry needs the realm whose clients it owns and the service account it signs in as" -}}
{{- end -}}
{{- $_ := set $w "keycloak" (dict "client_secret_file" (printf "%s/client-secret" (include "fhirwall.keycloakSecretDir" .))) -}}
{{- end -}}
{{- toYaml $w -}}
{{- end -}}

{{/*
The portal's wiring (portal.listen and its files), or nothing when portal.enabled is false. The portal is a
listener of its own: rendering stops if its port is one of the API ports, or if anything it needs at start
is missing.
*/}}
{{- define "fhirwall.portalWiring" -}}
{{- $pv := .Values.portal -}}
{{- $pc := .Values.config.portal | default dict -}}
{{- if not $pv.enabled -}}
{{- if dig "dcr" "enabled" false $pc -}}
{{- fail "config.portal.dcr.enabled is true but portal.enabled is false: Dynamic Client Registration is served on the portal's listener, which is off; set portal.enabled or drop config.portal.dcr.enabled" -}}
{{- end -}}
{{- else -}}
{{- $ns := .Release.Namespace -}}
{{- if not $pc.public_url -}}
{{- fail "portal.enabled needs config.portal.public_url: the portal's https origin as browsers and apps reach it (e.g. https://developer.example.com); its OIDC redirect URI and DCR's registration_client_uri are built on it" -}}
{{- end -}}
{{- if ne (include "fhirwall.registrySource" .) "postgres" -}}
{{- fail "portal.enabled needs config.registry.source postgres: apps registered in the portal or through DCR live in the PostgreSQL app registry, and fhirwall-proxy refuses a portal beside the file registry" -}}
{{- end -}}
{{- $p := .Values.proxy.ports -}}
{{- range $name := list "grpc" "local" "admin" -}}
{{- if eq (int $pv.port) (int (get $p $name)) -}}
{{- fail (printf "portal.port %d is proxy.ports.%s: the portal is a listener of its own and never shares an API or admin port; pick another" (int $pv.port) $name) -}}
{{- end -}}
{{- end -}}
{{- if not $pv.tlsSecret -}}
{{- fail (printf "portal.enabled needs portal.tlsSecret: the portal speaks only TLS (its cookies are Secure). Create a kubernetes.io/tls Secret for config.portal.public_url's host (`kubectl create secret tls fhirwall-portal-tls --cert=tls.crt --key=tls.key --namespace %s`, or cert-manager) and set portal.tlsSecret" $ns) -}}
{{- end -}}
{{- if not $pv.oidcClientSecret -}}
{{- fail (printf "portal.enabled needs portal.oidcClientSecret: the portal signs users in at issuers[0] as the confidential client %s. Create one with `kubectl create secret generic fhirwall-portal-oidc --from-literal=client-secret=... --namespace %s` and set portal.oidcClientSecret" ($pc.client_id | default "fhirwall-portal") $ns) -}}
{{- end -}}
{{- if not $pv.sessionKeySecret -}}
{{- fail (printf "portal.enabled needs portal.sessionKeySecret: the key every replica seals the session cookie with. Create one with `kubectl create secret generic fhirwall-portal-session --from-literal=session.key=\"$(head -c 32 /dev/urandom | base64)\" --namespace %s` and set portal.sessionKeySecret" $ns) -}}
{{- end -}}
{{- toYaml (dict
  "listen" (printf "0.0.0.0:%d" (int $pv.port))
  "tls_cert" (printf "%s/tls.crt" (include "fhirwall.portalTLSDir" .))
  "tls_key" (printf "%s/tls.key" (include "fhirwall.portalTLSDir" .))
  "client_secret_file" (printf "%s/client-secret" (include "fhirwall.portalOIDCDir" .))
  "session_key_file" (printf "%s/session.key" (include "fhirwall.portalSessionDir" .))) -}}
{{- end -}}
{{- end -}}
