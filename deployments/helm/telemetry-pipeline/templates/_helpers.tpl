{{- define "tp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: telemetry-pipeline
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tp.image" -}}
{{- printf "%s:%s" .Values.global.image.repository (.Values.global.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "tp.cnpg" -}}
{{- eq .Values.global.database.mode "cnpg" -}}
{{- end -}}

{{/* The DATABASE_URL Secret and key, as the app charts compute them. */}}
{{- define "tp.databaseSecret" -}}
{{- $db := .Values.global.database -}}
{{- if eq $db.mode "cnpg" -}}
{{- printf "%s-pg-app" .Release.Name -}}
{{- else if $db.url -}}
{{- printf "%s-database" .Release.Name -}}
{{- else -}}
{{- required "set global.database.existingSecret, global.database.url or global.database.mode=cnpg" $db.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "tp.databaseSecretKey" -}}
{{- $db := .Values.global.database -}}
{{- if eq $db.mode "cnpg" -}}uri
{{- else if $db.url -}}url
{{- else -}}{{ $db.secretKey | default "url" }}
{{- end -}}
{{- end -}}
