{{/*
Helpers for running N fhirwall-proxy replicas: the headless Service Envoy resolves to every ready replica, the
decision keys every replica shares, the global rate limiter, and the checks that stop a render whose replicas
would not agree (a key missing, N replicas each allowing a whole tier).
*/}}

{{/* The headless Service: its DNS name resolves to every ready proxy pod (and names each pod of the StatefulSet). */}}
{{- define "fhirwall.proxyHeadless" -}}
{{- printf "%s-proxy-headless" (include "fhirwall.fullname" .) -}}
{{- end -}}

{{- define "fhirwall.proxyHeadlessHost" -}}
{{- printf "%s.%s.svc.%s" (include "fhirwall.proxyHeadless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "fhirwall.ratelimitHost" -}}
{{- printf "%s-ratelimit.%s.svc.%s" (include "fhirwall.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* Not under /etc/fhirwall: that is the ConfigMap's mount. */}}
{{- define "fhirwall.decisionKeysDir" -}}/etc/fhirwall-decision-keys{{- end -}}
{{- define "fhirwall.ratelimitRedisCADir" -}}/etc/ratelimit-redis-ca{{- end -}}

{{/*
The Secret holding proxy.decision_keys_file: proxy.decisionKeys.existingSecret, or the one the chart makes from
proxy.decisionKeys.keys. Never generated here: a random key per render would differ between the renders of an
upgrade, and every replica must open what any replica sealed.
*/}}
{{- define "fhirwall.decisionKeysSecret" -}}
{{- $dk := .Values.proxy.decisionKeys -}}
{{- if and $dk.existingSecret $dk.keys -}}
{{- fail "proxy.decisionKeys.existingSecret and proxy.decisionKeys.keys are both set: the proxy reads one key file; keep the keys in your Secret, or drop existingSecret to let the chart make one from keys" -}}
{{- else if $dk.existingSecret -}}
{{- $dk.existingSecret -}}
{{- else if $dk.keys -}}
{{- printf "%s-decision-keys" (include "fhirwall.fullname" .) -}}
{{- else -}}
{{- fail (printf "proxy.decisionKeys is required: every fhirwall-proxy replica seals the ext_authz decision that travels through Envoy to ext_proc with the first of these AES-256 keys and opens it with any of them, so all replicas must read the same keys. Create a Secret with `kubectl create secret generic fhirwall-decision-keys --from-literal=decision.keys=\"$(head -c 32 /dev/urandom | base64)\" --namespace %s` and set proxy.decisionKeys.existingSecret=fhirwall-decision-keys (or put that base64 line under proxy.decisionKeys.keys)" .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{- define "fhirwall.decisionKeysFile" -}}
{{- printf "%s/decision.keys" (include "fhirwall.decisionKeysDir" .) -}}
{{- end -}}

{{/* The most replicas a component can have: maxReplicas with its HorizontalPodAutoscaler, else replicas. */}}
{{- define "fhirwall.maxReplicas" -}}
{{- if .autoscaling.enabled -}}
{{- .autoscaling.maxReplicas -}}
{{- else -}}
{{- .replicas -}}
{{- end -}}
{{- end -}}

{{/* An HPA's bounds, checked; call with (dict "name" "proxy" "v" .Values.proxy). */}}
{{- define "fhirwall.checkAutoscaling" -}}
{{- $a := .v.autoscaling -}}
{{- if $a.enabled -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "%s.autoscaling.minReplicas %d is more than maxReplicas %d: the HorizontalPodAutoscaler could never satisfy both; lower minReplicas or raise maxReplicas" .name (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- if not (dig "requests" "cpu" "" (.v.resources | default dict)) -}}
{{- fail (printf "%s.autoscaling.enabled needs %s.resources.requests.cpu: the HorizontalPodAutoscaler's CPU target is a percentage of the request" .name .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
rate_limits.global completed by the chart, or nothing when no global limiter is set. Rendering stops when more
than one Envoy or proxy replica would each enforce a whole tier on its own (N replicas allow N times a client's
rate) unless rateLimit.allowLocalOnly says that is wanted.
*/}}
{{- define "fhirwall.rateLimitGlobal" -}}
{{- $rl := .Values.rateLimit -}}
{{- $proxyMax := int (include "fhirwall.maxReplicas" .Values.proxy) -}}
{{- $envoyMax := int (include "fhirwall.maxReplicas" .Values.envoy) -}}
{{- if and $rl.deploy $rl.address -}}
{{- fail (printf "rateLimit.deploy is true and rateLimit.address %q is set: fhirwall uses one limiter; drop address to use the one the chart deploys, or set deploy=false to use yours" $rl.address) -}}
{{- end -}}
{{- if $rl.deploy -}}
{{- if not $rl.redis.url -}}
{{- fail "rateLimit.deploy needs rateLimit.redis.url: the chart's envoyproxy/ratelimit keeps its counters in a Redis it does not deploy. Set rateLimit.redis.url to its host:port (e.g. redis-master.redis.svc.cluster.local:6379, with rateLimit.redis.authSecret and tls when it needs them); or set rateLimit.deploy=false and rateLimit.address to a limiter you run; or, with one Envoy and one proxy replica only, rateLimit.deploy=false" -}}
{{- end -}}
{{- toYaml (dict "address" (printf "%s:%d" (include "fhirwall.ratelimitHost" .) (int $rl.ports.grpc)) "domain" $rl.domain "timeout" $rl.timeout) -}}
{{- else if $rl.address -}}
{{- toYaml (dict "address" $rl.address "domain" $rl.domain "timeout" $rl.timeout) -}}
{{- else if and (or (gt $proxyMax 1) (gt $envoyMax 1)) (not $rl.allowLocalOnly) -}}
{{- fail (printf "no global rate limiter, but up to %d fhirwall-proxy and %d Envoy replicas: each enforces a client's whole tier on its own, so N replicas allow N times the tier. Set rateLimit.deploy=true with rateLimit.redis.url (the chart runs envoyproxy/ratelimit), or rateLimit.address to a limiter you run; or set rateLimit.allowLocalOnly=true to accept per-replica limits" $proxyMax $envoyMax) -}}
{{- end -}}
{{- end -}}

{{/* Scheduling for fhirwall-proxy: proxy.affinity when set, else the anti-affinity proxy.podAntiAffinity asks for. */}}
{{- define "fhirwall.proxyScheduling" -}}
{{- $v := .Values.proxy -}}
{{- $sel := include "fhirwall.componentSelector" (dict "root" . "component" "proxy") | fromYaml -}}
{{- $s := dict "nodeSelector" $v.nodeSelector "tolerations" $v.tolerations "affinity" $v.affinity -}}
{{- if and (not $v.affinity) (ne $v.podAntiAffinity "none") -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" $sel) -}}
{{- if eq $v.podAntiAffinity "hard" -}}
{{- $_ := set $s "affinity" (dict "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term))) -}}
{{- else -}}
{{- $_ := set $s "affinity" (dict "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term)))) -}}
{{- end -}}
{{- end -}}
{{- /* A spread constraint without a labelSelector would count every pod of the namespace: give it the proxy's. */ -}}
{{- $tsc := list -}}
{{- range $v.topologySpreadConstraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $sel) -}}
{{- end -}}
{{- $tsc = append $tsc $c -}}
{{- end -}}
{{- $_ := set $s "topologySpreadConstraints" $tsc -}}
{{- include "fhirwall.scheduling" $s -}}
{{- end -}}

{{- define "fhirwall.ratelimitImage" -}}
{{- $i := .Values.rateLimit.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository $i.tag -}}
{{- end -}}
{{- end -}}

{{/* More than one proxy replica shares paging bindings, export jobs and queues through PostgreSQL only. */}}
{{- define "fhirwall.checkSharedState" -}}
{{- $max := int (include "fhirwall.maxReplicas" .Values.proxy) -}}
{{- if and (gt $max 1) (not .Values.config.jobs.postgres_dsn) (not (include "fhirwall.setsEnv" (dict "env" .Values.proxy.extraEnv "name" "FHIRWALL_JOBS_POSTGRES_DSN"))) -}}
{{- fail (printf "fhirwall-proxy may run %d replicas but has no PostgreSQL: without jobs.postgres_dsn, paging links, export jobs and the prior-auth queue live in one replica's memory, and a next page or status poll that reaches another replica is refused. Set FHIRWALL_JOBS_POSTGRES_DSN from a Secret (valueFrom.secretKeyRef) in proxy.extraEnv, or keep proxy.replicas at 1 without autoscaling" $max) -}}
{{- end -}}
{{- end -}}
