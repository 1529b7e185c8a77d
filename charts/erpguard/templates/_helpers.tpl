{{/* Names and labels shared by the templates. */}}
{{- define "erpguard.name" -}}erpguard{{- end -}}

{{- define "erpguard.fullname" -}}
{{- if contains "erpguard" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-erpguard" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "erpguard.labels" -}}
app.kubernetes.io/name: erpguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "erpguard.selectorLabels" -}}
app.kubernetes.io/name: erpguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "erpguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Namespaces the webhooks never intercept (also enforced in code). */}}
{{- define "erpguard.excludedNamespaces" -}}
- kube-system
- kube-public
- kube-node-lease
- {{ .Release.Namespace }}
{{- range .Values.webhook.excludedNamespaces }}
- {{ . }}
{{- end }}
{{- end -}}

{{/* clientConfig of every webhook: a Service, or a URL for local development and e2e. */}}
{{- define "erpguard.clientConfig" -}}
{{- if eq .root.Values.webhook.certificates "url" -}}
url: {{ printf "%s%s" (trimSuffix "/" .root.Values.webhook.url) .path | quote }}
caBundle: {{ .root.Values.webhook.caBundle | quote }}
{{- else -}}
service:
  name: {{ include "erpguard.fullname" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path | quote }}
  port: 443
{{- end }}
{{- end -}}
