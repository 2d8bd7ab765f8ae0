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

{{/* "true" when the replicas of each Deployment elect a leader on a Lease: HA (more than one
replica) or asked for explicitly. */}}
{{- define "mlcd.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{/*
Shards: `shards` Deployments, each serving the watchers whose uid hashes to its index
(MLCD_SHARDS, MLCD_SHARD_INDEX). Shard 0 is the Deployment of a one-shard install, unchanged, so
1 -> N is a rolling update of it plus N-1 new Deployments.

Selectors (a Deployment's selector is immutable, and Deployments must never select each other's
pods):
- Shard 0 keeps the selector it always had: {app.kubernetes.io/name, app.kubernetes.io/instance}.
  A selector matches every pod carrying those labels, whatever else it carries, so no other
  shard's pod may carry both. A different `component` or an added `shard` label would not help.
- Pods of shard i > 0 therefore carry no app.kubernetes.io/name (the one label left out; the
  instance label stays, so `-l app.kubernetes.io/instance=RELEASE` still finds every operator pod
  of the release), and their Deployment selects {instance, component: operator, shard: "i"}.
  Shard 0's pods carry shard "0", so no shard i > 0 selects them, nor shard j's.
- What must see every shard (the Service, so metrics of all shards are scraped; the
  NetworkPolicy) selects "mlcd.podsSelectorLabels": {instance, part-of, component: operator}, which
  every operator pod carries and the helm test pod (component helm-test, no instance) does not.
  Those selectors are mutable, so existing installs switch to it on upgrade.
- What is per shard (the PodDisruptionBudget, topology spread without a labelSelector) uses the
  Deployment's own selector.
*/}}
{{- define "mlcd.shardName" -}}
{{- if eq (int .index) 0 -}}
{{- include "mlcd.fullname" .root -}}
{{- else -}}
{{- printf "%s-shard-%d" (include "mlcd.fullname" .root) (int .index) -}}
{{- end -}}
{{- end -}}

{{/* The Deployment selector of shard .index (see above; shard 0's never changes). */}}
{{- define "mlcd.shardSelectorLabels" -}}
{{- if eq (int .index) 0 -}}
{{- include "mlcd.selectorLabels" .root -}}
{{- else -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: operator
app.kubernetes.io/shard: {{ .index | toString | quote }}
{{- end -}}
{{- end -}}

{{/* Labels of shard .index's Deployment and pods: no app.kubernetes.io/name on shards > 0. */}}
{{- define "mlcd.shardLabels" -}}
{{- $labels := include "mlcd.labels" .root -}}
{{- if ne (int .index) 0 -}}
{{- $labels = regexReplaceAll "(?m)^app\\.kubernetes\\.io/name: .*\n" $labels "" -}}
{{- end -}}
{{- $labels }}
app.kubernetes.io/shard: {{ .index | toString | quote }}
{{- end -}}

{{/* Selects the operator pods of every shard (Service, NetworkPolicy). */}}
{{- define "mlcd.podsSelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: match-list-change-detector
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Checks that need more than one value, which values.schema.json cannot express. Included by the
Deployment, so a bad combination fails `helm install`/`helm template` with a clear message.
*/}}
{{- define "mlcd.validate" -}}
{{- if lt (int .Values.shards) 1 -}}
{{- fail (printf "shards must be at least 1 (got %v)" .Values.shards) -}}
{{- end -}}
{{- range $key := list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" "app.kubernetes.io/part-of" "app.kubernetes.io/shard" -}}
{{- if hasKey $.Values.podLabels $key -}}
{{- fail (printf "podLabels must not set %s: the chart's selectors use it" $key) -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.metrics.enabled) .Values.metrics.serviceMonitor.enabled -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" -}}
{{- end -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.operator.healthPort)) -}}
{{- fail "metrics.port and operator.healthPort must differ" -}}
{{- end -}}
{{- $calendar := int .Values.calendar.port -}}
{{- if and $calendar (has $calendar (list (int .Values.operator.healthPort) (ternary (int .Values.metrics.port) 0 .Values.metrics.enabled))) -}}
{{- fail "calendar.port must differ from metrics.port and operator.healthPort" -}}
{{- end -}}
{{- if and $calendar .Values.calendar.ingress.enabled (not .Values.calendar.service.enabled) -}}
{{- fail "calendar.ingress.enabled needs calendar.service.enabled: the Ingress sends to that Service" -}}
{{- end -}}
{{- $timeout := int (include "mlcd.shutdownTimeout" .) -}}
{{- if and (not (kindIs "invalid" .Values.terminationGracePeriodSeconds)) (lt (int .Values.terminationGracePeriodSeconds) (add $timeout 5)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least operator.shutdownTimeoutSeconds + 5 (%d), or empty for %d: a pod killed before its runs are cut never releases its Lease" .Values.terminationGracePeriodSeconds (add $timeout 5) (add $timeout 15)) -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if eq .name "MLCD_NOTIFY_KEY" -}}
{{- fail "extraEnv must not set MLCD_NOTIFY_KEY: it comes from the Secret <fullname>-notify-key (notifyKey.create)" -}}
{{- end -}}
{{- if eq .name "MLCD_SHUTDOWN_TIMEOUT_SECONDS" -}}
{{- fail "extraEnv must not set MLCD_SHUTDOWN_TIMEOUT_SECONDS: set operator.shutdownTimeoutSeconds (the pod's grace period follows it)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* MLCD_SHUTDOWN_TIMEOUT_SECONDS; 60 also for `helm upgrade --reuse-values` from a chart that
   had no operator.shutdownTimeoutSeconds (its reused values lack the key). */}}
{{- define "mlcd.shutdownTimeout" -}}
{{- .Values.operator.shutdownTimeoutSeconds | default 60 | int -}}
{{- end -}}

{{/* The pod's grace period: the shutdown deadline plus time to release the Lease and exit. */}}
{{- define "mlcd.terminationGracePeriod" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (include "mlcd.shutdownTimeout" . | int) 15 -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}

{{/* RBAC rules for what the operator does in each namespace it serves. */}}
{{- define "mlcd.namespacedRules" -}}
# The watched resource: kopf lists and watches it; patch only to remove the finalizer older
# versions added (the operator adds none now); get for kopf's re-reads of single objects.
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
# FOGIS credentials, webhook settings and calendar feed tokens, read by name from the watcher's
# namespace only (never listed or watched).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- if .Values.calendar.port }}
# A calendar feed's token Secret `<name>-calendar`, created when a watcher with spec.calendar has
# none (owned by the watcher, so garbage collection removes it; deleting it rotates the token).
# `create` cannot be limited by resourceNames, and is granted alone: no update, patch or delete.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- end }}
# Events about runs and errors: kopf creates core/v1 Events (it never patches them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* The leader-election Leases, in the release namespace: one per shard, named like its
Deployment. `create` cannot be limited by resourceNames (the name is not known to RBAC before the
object exists), so it is granted alone; get and update only on our Leases. Never list or watch. */}}
{{- define "mlcd.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames:
    {{- range $i := until (int .Values.shards) }}
    - {{ include "mlcd.shardName" (dict "root" $ "index" $i) | quote }}
    {{- end }}
  verbs: [get, update]
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
