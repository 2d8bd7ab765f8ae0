{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "mlcd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the prefix of every resource name. */}}
{{- define "mlcd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mlcd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels selecting the operator's pods; never change them on upgrade. */}}
{{- define "mlcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlcd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mlcd.labels" -}}
helm.sh/chart: {{ include "mlcd.chart" . }}
{{ include "mlcd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: match-list-change-detector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mlcd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mlcd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mlcd.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when kopf peering is on: HA (more than one replica) or asked for explicitly. */}}
{{- define "mlcd.peeringEnabled" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "mlcd.peeringName" -}}
{{- default (include "mlcd.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/*
Checks that need more than one value, which values.schema.json cannot express. Included by the
Deployment, so a bad combination fails `helm install`/`helm template` with a clear message.
*/}}
{{- define "mlcd.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (ne (toString .Values.peering.priority) "auto") -}}
{{- fail "peering.priority must be \"auto\" when replicaCount > 1: replicas of equal priority all pause" -}}
{{- end -}}
{{- if and (not .Values.metrics.enabled) .Values.metrics.serviceMonitor.enabled -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" -}}
{{- end -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.operator.healthPort)) -}}
{{- fail "metrics.port and operator.healthPort must differ" -}}
{{- end -}}
{{- end -}}

{{/* RBAC rules for what the operator does in each namespace it serves. */}}
{{- define "mlcd.namespacedRules" -}}
# The watched resource: kopf lists and watches it and patches it (its finalizer and progress
# annotations); get for kopf's re-reads of single objects.
- apiGroups: [matchlist.io]
  resources: [matchwatchers]
  verbs: [get, list, watch, patch]
# Each run ends in one status patch (a merge patch: no read needed).
- apiGroups: [matchlist.io]
  resources: [matchwatchers/status]
  verbs: [patch]
# One snapshot ConfigMap per watcher, read, created and replaced by name (never listed, watched,
# patched or deleted: garbage collection removes it with its MatchWatcher). Its owner reference
# sets blockOwnerDeletion=false, so no matchwatchers/finalizers permission is needed for it.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update]
# FOGIS credentials and webhook settings, read by name from the watcher's namespace only.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events about runs and errors: kopf creates core/v1 Events (it never patches them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* kopf peering: watch the peering objects; read and patch (keep-alives) only ours. */}}
{{- define "mlcd.peeringRules" -}}
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  resourceNames: [{{ .name | quote }}]
  verbs: [get, patch]
{{- end -}}

{{/*
"true" when the MatchWatcher CRD exists in the cluster but belongs to no release of this name
and namespace (kubectl apply, or a release uninstalled elsewhere with crds.keep) and
crds.skipIfPresent asks to leave it alone. `helm template` sees no cluster: always "".
*/}}
{{- define "mlcd.crdForeign" -}}
{{- if .Values.crds.skipIfPresent -}}
{{- $live := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "matchwatchers.matchlist.io" -}}
{{- if $live -}}
{{- $annotations := default dict (dig "metadata" "annotations" dict $live) -}}
{{- $release := get $annotations "meta.helm.sh/release-name" -}}
{{- $namespace := get $annotations "meta.helm.sh/release-namespace" -}}
{{- if or (ne $release .Release.Name) (ne $namespace .Release.Namespace) -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
