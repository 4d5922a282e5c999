{{/* Names, labels and shared RBAC rules of the Sluice chart. */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; names of cluster-scoped objects start with it, so it must be unique in
the cluster (the release name is, within its namespace). */}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the leader Lease lives: the controller uses --namespace, else $POD_NAMESPACE. */}}
{{- define "sluice.leaseNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{/* The subject of every binding. */}}
{{- define "sluice.subjects" -}}
subjects:
  - kind: ServiceAccount
    name: {{ include "sluice.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
What the Rollout and analysis controllers call on namespaced resources, verb by verb. Keep in step with
the code and with the list in tests/chart.rs, which fails when the two differ.
*/}}
{{- define "sluice.controllerRules" -}}
# src/rollout/controller.rs watches Rollouts; src/rollout/act.rs replaces their status.
- apiGroups: ["sluice.dev"]
  resources: ["rollouts"]
  verbs: ["list", "watch"]
- apiGroups: ["sluice.dev"]
  resources: ["rollouts/status"]
  verbs: ["update"]
# ReplicaSets and AnalysisRuns carry an ownerReference with blockOwnerDeletion to their Rollout; clusters
# with the OwnerReferencesPermissionEnforcement admission plugin require this for that.
- apiGroups: ["sluice.dev"]
  resources: ["rollouts/finalizers"]
  verbs: ["update"]
# src/rollout/act.rs creates, scales (server-side apply), annotates and deletes revisions' ReplicaSets,
# and reads the stable one whole for an experiment step; src/experiment/act.rs creates, scales and
# annotates Experiments' ReplicaSets.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Experiments: created and terminated by the Rollout controller for experiment steps
# (src/rollout/act.rs), run by src/experiment/controller.rs, which replaces their status.
- apiGroups: ["sluice.dev"]
  resources: ["experiments"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["sluice.dev"]
  resources: ["experiments/status"]
  verbs: ["update"]
# Experiments own their ReplicaSets and AnalysisRuns with blockOwnerDeletion.
- apiGroups: ["sluice.dev"]
  resources: ["experiments/finalizers"]
  verbs: ["update"]
# A workloadRef Deployment: read for its template, watched, scaled per `scaleDown`.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# Stable/canary/active/preview Services: watched, read and their selector applied with the
# pod-template-hash set (the selector is an atomic map: the live keys are written back); an
# Experiment template's `service` is created and deleted by src/experiment/act.rs.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods of Rollout revisions (readiness) and their eviction for `restartAt`.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# Traffic routing: Gateway API HTTPRoute weights; the NGINX canary Ingress, created beside the stable
# one and deleted after promotion; Istio VirtualService weights and DestinationRule subset hashes; the
# SMI TrafficSplit the Rollout owns (created by the apply); TraefikService weights; the Ambassador
# canary Mappings the Rollout owns (created, weighted, deleted); ApisixRoute backend weights.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices", "destinationrules"]
  verbs: ["get", "patch"]
- apiGroups: ["split.smi-spec.io"]
  resources: ["trafficsplits"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["traefik.io"]
  resources: ["traefikservices"]
  verbs: ["get", "patch"]
- apiGroups: ["getambassador.io"]
  resources: ["mappings"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["apisix.apache.org"]
  resources: ["apisixroutes"]
  verbs: ["get", "patch"]
# AnalysisRuns: created, terminated and (beyond spec.analysis's history limits) deleted by the Rollout controller, measured by the analysis controller
# (src/analysis/controller.rs), which writes their status.
- apiGroups: ["sluice.dev"]
  resources: ["analysisruns"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["sluice.dev"]
  resources: ["analysisruns/status"]
  verbs: ["patch"]
# The `job` metric provider (src/analysis/provider/job.rs): a Job per measurement, created, read
# while it runs, deleted when the run ends or beyond the measurement retention; a metadata watch of
# the Jobs labelled analysisrun.argoproj.io/uid. The Jobs' controller reference to their run sets
# blockOwnerDeletion, which needs update on the run's finalizers.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
- apiGroups: ["sluice.dev"]
  resources: ["analysisruns/finalizers"]
  verbs: ["update"]
# src/rollout/template_stores.rs: the templates Rollouts name, resolved from a watch cache.
- apiGroups: ["sluice.dev"]
  resources: ["analysistemplates"]
  verbs: ["list", "watch"]
# `secretKeyRef` analysis arguments and Prometheus authentication.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# src/notifications/controller.rs: the `notified.notifications.sluice.dev` record on Rollouts (merge
# patch; on AnalysisRuns and Applications the verbs above and the GitOps rules grant it), and a watch of
# the ConfigMap sluice-notifications (the Secret of the same name is read with `get`, above).
- apiGroups: ["sluice.dev"]
  resources: ["rollouts"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch"]
# kube's event Recorder (events.k8s.io/v1): created, then patched when repeated.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Cluster-scoped reads: a ClusterRole even when watchNamespace is set. */}}
{{- define "sluice.clusterScopedRules" -}}
# src/rollout/template_stores.rs watches the ClusterAnalysisTemplates Rollouts may name.
- apiGroups: ["sluice.dev"]
  resources: ["clusteranalysistemplates"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Whether the GitOps core is cluster admin: gitops.clusterAdmin, which defaults to the opposite of
gitops.syncImpersonation. "true" or empty. */}}
{{- define "sluice.gitopsClusterAdmin" -}}
{{- $admin := .Values.gitops.clusterAdmin }}
{{- if kindIs "invalid" $admin }}
{{- $admin = not .Values.gitops.syncImpersonation }}
{{- end }}
{{- if $admin }}true{{ end }}
{{- end }}

{{/* The GitOps core (src/gitops/): Applications and their repository credentials, plus, when it is not
cluster admin, read access and `impersonate` (syncImpersonation) or the kinds the user lists. */}}
{{- define "sluice.gitopsRules" -}}
{{- if include "sluice.gitopsClusterAdmin" . }}
# Applications deploy arbitrary kinds from Git (as Argo CD's application-controller does).
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["*"]
{{- else }}
# src/gitops/controller.rs watches Applications; src/gitops/app_writes.rs patches their operation,
# automated policy and finalizers, and their status.
- apiGroups: ["sluice.dev"]
  resources: ["applications"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["sluice.dev"]
  resources: ["applications/status"]
  verbs: ["patch"]
# src/appset/controller.rs watches the ApplicationSets of the control namespace, server-side applies
# (create or patch) and deletes the Applications they generate, and applies their status. Generated
# Applications carry a blockOwnerDeletion ownerReference to their ApplicationSet.
- apiGroups: ["sluice.dev"]
  resources: ["applicationsets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sluice.dev"]
  resources: ["applicationsets/status"]
  verbs: ["patch"]
- apiGroups: ["sluice.dev"]
  resources: ["applicationsets/finalizers"]
  verbs: ["update"]
- apiGroups: ["sluice.dev"]
  resources: ["applications"]
  verbs: ["create", "delete"]
# src/gitops/controller.rs watches the AppProjects of the control namespace; src/gitops/projects.rs
# creates the `default` project when it is missing.
- apiGroups: ["sluice.dev"]
  resources: ["appprojects"]
  verbs: ["get", "list", "watch", "create"]
# Repository credentials: a watch of the Secrets labelled sluice.dev/secret-type=repository (RBAC cannot
# select by label).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
# The users' health rules: a watch of the ConfigMap sluice-health of the control namespace
# (src/gitops/health_rules.rs).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch"]
{{- if .Values.gitops.syncImpersonation }}
# Reads only, as the controller: the watch caches of the kinds Applications deploy (src/gitops/live.rs),
# kind discovery, and the health and CRD reads between sync waves (src/gitops/apply.rs).
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["get", "list", "watch"]
# Every write of a sync goes through the project's ServiceAccount (src/gitops/impersonation.rs).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["impersonate"]
{{- else }}
{{- range .Values.gitops.resources }}
- apiGroups: {{ toJson .apiGroups }}
  resources: {{ toJson .resources }}
  verbs: {{ toJson (default $.Values.gitops.defaultVerbs .verbs) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
