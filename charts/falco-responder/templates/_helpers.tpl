{{/* Name of the chart's objects: the release name when it already says falco-responder. */}}
{{- define "falco-responder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "falco-responder.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "falco-responder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "falco-responder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "falco-responder.labels" -}}
{{ include "falco-responder.selectorLabels" . }}
{{ include "falco-responder.releaseLabels" . }}
{{- end }}

{{/* The standard labels besides name and instance (every object carries them). */}}
{{- define "falco-responder.releaseLabels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* OpenFaaS CE without dedicatedToken: the function runs as its namespace's `default`. */}}
{{- define "falco-responder.createServiceAccount" -}}
{{- if and .Values.serviceAccount.create (or (ne .Values.platform "openfaas") .Values.openfaas.dedicatedToken) }}true{{ end }}
{{- end }}

{{- define "falco-responder.serviceAccountName" -}}
{{- if and (eq .Values.platform "openfaas") (not .Values.openfaas.dedicatedToken) }}
{{- print "default" }}
{{- else if .Values.serviceAccount.create }}
{{- default (include "falco-responder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "falco-responder.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the caller's bearer token (AUTH_TOKEN_FILE). */}}
{{- define "falco-responder.authSecretName" -}}
{{- default (printf "%s-auth" (include "falco-responder.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Where the auth token file is mounted in the container. */}}
{{- define "falco-responder.authTokenFile" -}}
{{- if eq .Values.platform "openfaas" }}
{{- printf "/var/openfaas/secrets/%s" .Values.auth.secretKey }}
{{- else }}
{{- printf "/var/run/secrets/falco-responder/%s" .Values.auth.secretKey }}
{{- end }}
{{- end }}

{{/* A value as the env var string: whole numbers without the float64 notation YAML gives them. */}}
{{- define "falco-responder.str" -}}
{{- if kindIs "float64" . }}{{ int64 . }}{{ else if kindIs "invalid" . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/*
The function's environment as a YAML map NAME: "value", only the variables that are set. Each
key of `config` is one variable of the README's configuration table, named in camelCase
(minPriority -> MIN_PRIORITY): a new variable is one new key in values.yaml and its schema.
PORT is left to Knative, which injects it.
*/}}
{{- define "falco-responder.envMap" -}}
{{- $env := dict }}
{{- range $k, $v := omit .Values.config "evidence" }}
{{- $_ := set $env ($k | snakecase | upper) (include "falco-responder.str" $v) }}
{{- end }}
{{- /* Containment says nothing unless it can happen (its RBAC comes with it). */}}
{{- if include "falco-responder.containOn" . }}
{{- $_ := set $env "EVIDENCE_LOG_BYTES" (include "falco-responder.str" .Values.config.evidence.logBytes) }}
{{- $_ := set $env "EVIDENCE_MAX_CONFIGMAPS" (include "falco-responder.str" .Values.config.evidence.maxConfigMaps) }}
{{- else }}
{{- range list "ACTION" "CONTAIN_RULES" "DELETE_RULES" "CONTAIN_SECONDS" }}{{ $_ := unset $env . }}{{ end }}
{{- end }}
{{- $_ := set $env "PROTECTED_NAMESPACES" (include "falco-responder.protectedNamespaces" .) }}
{{- if eq .Values.platform "knative" }}{{ $_ := unset $env "PORT" }}{{ end }}
{{- /* An opt-in: only said when given. */}}
{{- if not .Values.config.allowForceDelete }}{{ $_ := unset $env "ALLOW_FORCE_DELETE" }}{{ end }}
{{- if not .Values.config.useEviction }}{{ $_ := unset $env "USE_EVICTION" }}{{ end }}
{{- if not .Values.config.trustProtectAnnotation }}{{ $_ := unset $env "TRUST_PROTECT_ANNOTATION" }}{{ end }}
{{- if .Values.auth.enabled }}{{ $_ := set $env "AUTH_TOKEN_FILE" (include "falco-responder.authTokenFile" .) }}{{ end }}
{{- if and (eq .Values.platform "openfaas") .Values.openfaas.dedicatedToken }}
{{- $_ := set $env "KUBE_TOKEN_FILE" "/var/openfaas/secrets/token" }}
{{- end }}
{{- range $k, $v := $env }}
{{- if ne $v "" }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
PROTECTED_NAMESPACES: config.protectedNamespaces, plus (protectPlatformNamespaces) Falco's own
namespace (a forged event that deletes Falco's or Falcosidekick's pods blinds detection) and the
namespaces of the platform that carries the events (the Knative activator, the OpenFaaS gateway,
the Argo Events bus and Sensor): a forged event must not be able to cut the path of the next one.
*/}}
{{- define "falco-responder.protectedNamespaces" -}}
{{- $list := list }}
{{- range (splitList "," (toString .Values.config.protectedNamespaces)) }}{{ with trim . }}{{ $list = append $list . }}{{ end }}{{ end }}
{{- if .Values.protectPlatformNamespaces }}
{{- $list = append $list .Values.networkPolicy.falcosidekickNamespace }}
{{- if eq .Values.platform "knative" }}
{{- $list = concat $list (list "knative-serving" "knative-eventing" .Values.networkPolicy.knative.ingressNamespace) }}
{{- else if eq .Values.platform "openfaas" }}
{{- $list = append $list .Values.networkPolicy.openfaas.gatewayNamespace }}
{{- end }}
{{- if .Values.argo.enabled }}
{{- $list = concat $list (list .Values.argo.namespace .Values.argo.eventSource.falcosidekickNamespace) }}
{{- if eq .Values.argo.trigger "workflow" }}{{ $list = append $list .Values.argo.workflow.controllerNamespace }}{{ end }}
{{- end }}
{{- end }}
{{- without ($list | uniq) "" | join "," }}
{{- end }}

{{/* The env list of a Kubernetes container: envMap, then extraEnv. */}}
{{- define "falco-responder.containerEnv" -}}
{{- $list := list }}
{{- range $k, $v := (include "falco-responder.envMap" . | fromYaml) }}
{{- $list = append $list (dict "name" $k "value" $v) }}
{{- end }}
{{- toYaml (concat $list .Values.extraEnv) }}
{{- end }}

{{/* The rules the function needs, and nothing else (tests/deploy/chart.rs and install.rs prove both). */}}
{{- define "falco-responder.rbacRules" -}}
# get: read the pod (uid, containers) before acting; delete: the response itself.
# No list/watch: the pod is named in the Falco event.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "delete"]
# The audit trail (FalcoPodDeleted / FalcoDryRun Events on the pods it acts on). The deletion
# breaker's records live in the function's own namespace only (falco-responder.breakerRbac).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
# Prove a pod's owner exists with the uid its ownerReference claims, and name the workload
# above a ReplicaSet or a Job (metadata GET).
- apiGroups: ["apps"]
  resources: ["replicasets", "statefulsets", "daemonsets"]
  verbs: ["get"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get"]
# The protection label falco-responder/protect=true on the pod's namespace (metadata GET).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- if .Values.config.minAvailable }}
# MIN_AVAILABLE: the workload's spec.replicas and ready count.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get"]
{{- end }}
{{- if .Values.config.useEviction }}
# USE_EVICTION: the Eviction API, which honours PodDisruptionBudgets.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
{{- end }}
{{- if include "falco-responder.containOn" . }}
# Containment: label (and release from its ReplicaSet) the pod, then lower its
# activeDeadlineSeconds; every patch carries the pod's uid as a precondition.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["patch"]
# The deny-all NetworkPolicy owned by the pod; get: check that one of our name is ours.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create", "get"]
# The evidence: the bounded tail of each container's log.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/*
Whether a containment can happen (config.action contain, or a rule in config.containRules):
then the containment variables are rendered and its RBAC granted. Fails closed on rule lists
the binary would refuse at start: a rule in both lists, or (RULES not "*") one it never acts on.
*/}}
{{- define "falco-responder.containOn" -}}
{{- $c := .Values.config }}
{{- $split := dict }}
{{- range $k := list "containRules" "deleteRules" "rules" }}
{{- $l := list }}
{{- range (splitList "," (toString (index $c $k))) }}{{ with trim . }}{{ $l = append $l . }}{{ end }}{{ end }}
{{- $_ := set $split $k $l }}
{{- end }}
{{- /* Empty RULES is the binary's default list. */}}
{{- if not $split.rules }}{{ $_ := set $split "rules" (list "Terminal shell in container") }}{{ end }}
{{- range $split.containRules }}
{{- if has . $split.deleteRules }}
{{- fail (printf "config.containRules and config.deleteRules both name %q: say which action it gets" .) }}
{{- end }}
{{- if and (not (has "*" $split.rules)) (not (has . $split.rules)) }}
{{- fail (printf "config.containRules names %q, which is not in config.rules: it would never apply" .) }}
{{- end }}
{{- end }}
{{- range $split.deleteRules }}
{{- if and (not (has "*" $split.rules)) (not (has . $split.rules)) }}
{{- fail (printf "config.deleteRules names %q, which is not in config.rules: it would never apply" .) }}
{{- end }}
{{- end }}
{{- if or (eq (toString $c.action) "contain") $split.containRules }}true{{ end }}
{{- end }}

{{/* Whether the deletion breaker is on: either budget not off. */}}
{{- define "falco-responder.breakerOn" -}}
{{- $off := list "off" "none" "0" "false" }}
{{- if or (not (has (lower (toString .Values.config.maxDeletions)) $off)) (not (has (lower (toString .Values.config.maxDeletionsPerWorkload)) $off)) }}true{{ end }}
{{- end }}

{{/* The deletion breaker's rights, in the function's own namespace only: it writes one
     record (an Event) per deletion there and follows them (list + watch). Nobody else's
     namespace: Events there are writable by others, who could forge records and hold the
     breaker open (SECURITY.md). Argument: dict "root" . "name" roleName "namespace" ns
     "subject" subjectDict. */}}
{{- define "falco-responder.breakerRbac" -}}
{{- if include "falco-responder.breakerOn" .root }}
---
# The deletion breaker (MAX_DELETIONS, MAX_DELETIONS_PER_WORKLOAD): its records, here only.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .name }}-breaker
  namespace: {{ .namespace }}
  labels:
    {{- include "falco-responder.labels" .root | nindent 4 }}
rules:
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .name }}-breaker
  namespace: {{ .namespace }}
  labels:
    {{- include "falco-responder.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ .name }}-breaker
subjects:
  {{- toYaml (list .subject) | nindent 2 }}
{{- end }}
{{- end }}

{{/* MIN_AVAILABLE's reservations (README "Which pod, and when"), in the function's own
     namespace only: one record (an Event) per deletion in flight, created under a name per
     workload and slot, listed when a slot is taken, deleted once its hold is over. Argument:
     as falco-responder.breakerRbac. */}}
{{- define "falco-responder.reservationRbac" -}}
{{- if .root.Values.config.minAvailable }}
---
# MIN_AVAILABLE: its reservations, here only.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .name }}-reservations
  namespace: {{ .namespace }}
  labels:
    {{- include "falco-responder.labels" .root | nindent 4 }}
rules:
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "list", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .name }}-reservations
  namespace: {{ .namespace }}
  labels:
    {{- include "falco-responder.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ .name }}-reservations
subjects:
  {{- toYaml (list .subject) | nindent 2 }}
{{- end }}
{{- end }}

{{/* Containment's evidence ConfigMaps, in the function's own namespace only (out of reach of
     the contained pod's author): created one per pod, listed and the oldest deleted beyond
     EVIDENCE_MAX_CONFIGMAPS. Argument: as falco-responder.breakerRbac. */}}
{{- define "falco-responder.evidenceRbac" -}}
{{- if include "falco-responder.containOn" .root }}
---
# Containment's evidence (ConfigMaps), here only.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .name }}-evidence
  namespace: {{ .namespace }}
  labels:
    {{- include "falco-responder.labels" .root | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["create", "list", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .name }}-evidence
  namespace: {{ .namespace }}
  labels:
    {{- include "falco-responder.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ .name }}-evidence
subjects:
  {{- toYaml (list .subject) | nindent 2 }}
{{- end }}
{{- end }}

{{/* The URL the platform gives the function, inside the cluster. */}}
{{- define "falco-responder.url" -}}
{{- $fullname := include "falco-responder.fullname" . }}
{{- if .Values.argo.url }}
{{- .Values.argo.url }}
{{- else if eq .Values.platform "kubernetes" }}
{{- printf "http://%s.%s.svc.cluster.local:%v" $fullname .Release.Namespace .Values.service.port }}
{{- else if eq .Values.platform "knative" }}
{{- printf "http://%s.%s.svc.cluster.local" $fullname .Release.Namespace }}
{{- else }}
{{- printf "http://gateway.%s:8080/function/%s.%s" .Values.networkPolicy.openfaas.gatewayNamespace $fullname .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "falco-responder.argo.sensorName" -}}
{{- default (printf "%s-%s" (include "falco-responder.fullname" .) (ternary "workflow" .Values.platform (eq .Values.argo.trigger "workflow"))) .Values.argo.sensorName }}
{{- end }}

{{- define "falco-responder.argo.eventSourceAuthName" -}}
{{- default (printf "%s-eventsource-auth" (include "falco-responder.fullname" .)) .Values.argo.eventSource.authSecret.name }}
{{- end }}

{{- define "falco-responder.argo.sensorAuthName" -}}
{{- default (printf "%s-sensor-auth" (include "falco-responder.fullname" .)) .Values.argo.sensorAuthSecret.name }}
{{- end }}

{{/*
A generated token, or the one a Secret already holds (kept across upgrades). Both need Helm's
`lookup`, which answers an empty map without a cluster (`helm template`, a client-side dry run,
Argo CD, Flux's post-renderers): a token invented there would change on every render and lock
out every sender, so the chart refuses and names the value to set instead. A list of Secrets
is never empty when the cluster answers (it has `kind: SecretList`, even with no items).
Argument: dict "ns" "name" "key" "value" (the value naming an existing Secret).
*/}}
{{- define "falco-responder.keptToken" -}}
{{- if not (lookup "v1" "Secret" .ns "") }}
{{- fail (printf "cannot generate the token without a cluster (helm template, a client-side dry run, Argo CD): a token invented here would change on every render and lock out every sender. Create the Secret yourself and set %s (docs/deploy-helm.md, \"GitOps\")" .value) }}
{{- end }}
{{- $token := randAlphaNum 48 }}
{{- with (lookup "v1" "Secret" .ns .name) }}
{{- with (index (default dict .data) $.key) }}
{{- $token = b64dec . }}
{{- end }}
{{- end }}
{{- $token }}
{{- end }}

{{/* The waits between attempts, spelled "2 s, 4 s and 8 s": first, factor, n retries. */}}
{{- define "falco-responder.waits" -}}
{{- $w := float64 .first }}
{{- $out := list }}
{{- range $i := until (int .n) }}
{{- $out = append $out (printf "%s s" (ternary (printf "%d" (int64 $w)) (toString $w) (eq (floor $w) $w))) }}
{{- $w = mulf $w $.factor }}
{{- end }}
{{- if eq (len $out) 1 }}{{ first $out }}{{ else if gt (len $out) 1 }}{{ join ", " (initial $out) }} and {{ last $out }}{{ end }}
{{- end }}

{{/*
Seconds the function may need after SIGTERM: SHUTDOWN_DELAY_SECONDS, then the slowest request
(REQUEST_TIMEOUT_SECONDS) and its API calls (API_TIMEOUT_SECONDS) finish (README, "Shutdown").
*/}}
{{- define "falco-responder.shutdownSeconds" -}}
{{- $sum := 0 }}
{{- /* An empty value leaves the variable unset: the binary's default. */}}
{{- range $v := list (list .Values.config.shutdownDelaySeconds 5) (list .Values.config.requestTimeoutSeconds 10) (list .Values.config.apiTimeoutSeconds 10) }}
{{- $s := include "falco-responder.str" (first $v) }}
{{- $sum = add $sum (ternary (last $v) $s (eq $s "")) }}
{{- end }}
{{- $sum }}
{{- end }}

{{/*
Pod Security `restricted` for the pods Argo Events makes from an EventSource or a Sensor
(spec.template.securityContext / spec.template.container.securityContext, argo-events
pkg/apis/events/v1alpha1/template.go). Their image is FROM scratch with no USER, i.e. root:
a numeric non-root user is required (any works, they write nothing to their filesystem).
*/}}
{{- define "falco-responder.argo.podTemplateSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
container:
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
{{- end }}

{{/* Argo's executor containers (argoexec init / wait): restricted, without a read-only root
     filesystem, which Argo itself leaves off for them (workflowpod.go newExecContainer). */}}
{{- define "falco-responder.argo.executorSecurity" -}}
{{- dict "runAsNonRoot" true "allowPrivilegeEscalation" false "capabilities" (dict "drop" (list "ALL")) "seccompProfile" (dict "type" "RuntimeDefault") | toJson }}
{{- end }}
