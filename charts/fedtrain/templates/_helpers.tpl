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
What the operator may do to TrainingFederations and their children, in a ClusterRole or in a Role
per watched namespace (README, "RBAC the operator needs"). Secrets: create; in a watched
namespace also get, to read back the public key of a restored key Secret. Never a cluster-wide
read of Secrets: a deleted member leaves through a Job that mounts its key. Called with (dict "root" $ "namespaced" true|false).
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
  verbs: {{ if .namespaced }}[create, get]{{ else }}[create]{{ end }}
{{- end -}}
