{{/* The release's base name: the release name when it already says sandboxpool. */}}
{{- define "sandboxpool.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator's objects (Deployment, Service, RBAC) and its Lease. */}}
{{- define "sandboxpool.operatorName" -}}
{{- printf "%s-operator" (include "sandboxpool.fullname" .) -}}
{{- end -}}

{{- define "sandboxpool.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sandboxpool.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels selecting the operator's pods: stable across upgrades (a selector is immutable). */}}
{{- define "sandboxpool.selectorLabels" -}}
app.kubernetes.io/name: sandboxpool-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sandboxpool.labels" -}}
{{ include "sandboxpool.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: sandboxpool
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* repository:tag (tag defaulting to the appVersion), or repository@digest. */}}
{{- define "sandboxpool.imageRef" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}
