{{/* Names, labels and the image reference. */}}
{{- define "meshplug.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshplug.selectorLabels" -}}
app.kubernetes.io/name: meshplug-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshplug.labels" -}}
{{ include "meshplug.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "meshplug.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- .Values.image.repository }}:{{ $tag }}{{ with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{- define "meshplug.moduleBaseURL" -}}
{{- .Values.modules.baseURL | default (printf "http://%s.%s.svc:%d" (include "meshplug.fullname" .) .Release.Namespace (int .Values.modules.port)) -}}
{{- end -}}
