{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "fedtrain.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fedtrain.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "fedtrain.labels" -}}
{{ include "fedtrain.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fedtrain.serviceAccountName" -}}
{{- default (include "fedtrain.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "fedtrain.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "fedtrain.trainerImage" -}}
{{- default (printf "ghcr.io/fedtrain/trainer:%s" .Chart.AppVersion) .Values.trainer.image -}}
{{- end -}}

{{/*
The namespaces the operator serves with scope "namespaces" (the default), as a list: the release
namespace, those of watchNamespaces, and those labelled fedtrain.dev/enabled=true when the chart
is installed or upgraded (helm lookup; none under helm template).
*/}}
{{- define "fedtrain.namespaces" -}}
{{- $namespaces := list .Release.Namespace -}}
{{- range .Values.watchNamespaces -}}
{{- $namespaces = append $namespaces . -}}
{{- end -}}
{{- range (lookup "v1" "Namespace" "" "").items | default list -}}
{{- if eq (index (.metadata.labels | default dict) "fedtrain.dev/enabled" | default "") "true" -}}
{{- $namespaces = append $namespaces .metadata.name -}}
{{- end -}}
{{- end -}}
{{- $namespaces | uniq | toJson -}}
{{- end -}}

{{/*
What the operator may do to TrainingFederations and their children, in a ClusterRole (scope
"cluster") or in a Role per served namespace (README, "RBAC the operator needs"). Secrets:
create only (the member key); it never reads one: a deleted member leaves through a Job that
mounts its key. Called with (dict "root" $ "namespaced" true|false).
*/}}
{{- define "fedtrain.reconcileRules" -}}
- apiGroups: [fedtrain.dev]
  resources: [trainingfederations]
  verbs: [get, list, watch, patch]
- apiGroups: [fedtrain.dev]
  resources: [trainingfederations/status]
  verbs: [get, patch]
- apiGroups: [fedtrain.dev]
  resources: [trainingfederations/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
