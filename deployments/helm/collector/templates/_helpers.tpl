{{/*
MQ_READER_URLS: one URL per possible reader pod, through the readers'
headless Service, for global.mqreader.maxReplicas pods (the reader HPA's
maximum), so a scale-up needs no collector restart; the client skips
readers that do not exist or do not answer.
*/}}
{{- define "collector.envData" -}}
{{- $r := .Values.global.mqreader -}}
{{- $urls := list -}}
{{- range $i := until (int $r.maxReplicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s-headless.%s.svc:%v" $r.name $i $r.name $.Release.Namespace $r.port) -}}
{{- end -}}
MQ_READER_URLS: {{ join "," $urls | quote }}
QUEUE_BACKEND: postgres
STORE_BACKEND: postgres
{{- with (include "collector.auth" . | fromYaml).env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The consume token the collector sends, mounted from the Secret. */}}
{{- define "collector.auth" -}}
{{- include "tlib.tokenMount" (dict "ctx" . "scope" "consume" "role" "client") -}}
{{- end -}}
