{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "session-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "session-gateway.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: session-gateway
{{- end -}}

{{/* What selects the gateway pods. */}}
{{- define "session-gateway.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* The gateway configuration: `config`, or files/gateway.toml and [redis] from the values. */}}
{{- define "session-gateway.config" -}}
{{- if .Values.config -}}
{{ .Values.config }}
{{- else -}}
{{ .Files.Get "files/gateway.toml" }}
[redis]
mode = {{ .Values.redis.mode | quote }}
url = {{ .Values.redis.url | quote }}
password_env = "SG_REDIS_PASSWORD"
key_prefix = {{ .Values.redis.keyPrefix | quote }}
connect_timeout = {{ .Values.redis.connectTimeout | quote }}
response_timeout = {{ .Values.redis.responseTimeout | quote }}
grace_period = {{ .Values.redis.gracePeriod | quote }}
{{- end -}}
{{- end -}}
