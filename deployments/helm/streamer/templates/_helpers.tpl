{{- define "streamer.envData" -}}
{{- $w := .Values.global.mqwriter -}}
MQ_WRITER_URL: {{ printf "http://%s.%s.svc:%v" $w.name .Release.Namespace $w.port | quote }}
QUEUE_BACKEND: postgres
STREAMER_SOURCE: {{ .Values.source | quote }}
{{- if eq .Values.source "scrape" }}
SCRAPE_INTERVAL: {{ .Values.scrape.interval | quote }}
{{- with .Values.scrape.timeout }}
SCRAPE_TIMEOUT: {{ . | quote }}
{{- end }}
{{- if .Values.scrape.targets }}
SCRAPE_TARGETS: {{ join "," .Values.scrape.targets | quote }}
{{- else }}
SCRAPE_KUBERNETES_SELECTOR: {{ .Values.scrape.kubernetes.selector | quote }}
SCRAPE_KUBERNETES_NAMESPACE: {{ include "streamer.exporterNamespace" . | quote }}
{{- with .Values.scrape.kubernetes.port }}
SCRAPE_KUBERNETES_PORT: {{ . | toString | quote }}
{{- end }}
{{- end }}
{{- else if eq .Values.csv.source "configMap" }}
STREAMER_CSV_PATH: {{ .Values.csv.mountPath | quote }}
{{- end }}
{{- with (include "streamer.auth" . | fromYaml).env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The publish token the streamer sends, mounted from the Secret. */}}
{{- define "streamer.auth" -}}
{{- include "tlib.tokenMount" (dict "ctx" . "scope" "publish" "role" "client") -}}
{{- end -}}

{{/* The namespace of the dcgm-exporter's EndpointSlices. */}}
{{- define "streamer.exporterNamespace" -}}
{{- .Values.scrape.kubernetes.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Whether the streamer discovers targets through the Kubernetes API. */}}
{{- define "streamer.discovers" -}}
{{- if and (eq .Values.source "scrape") (not .Values.scrape.targets) -}}true{{- end -}}
{{- end -}}

{{/* Whether the CSV is shipped in ConfigMaps and mounted. */}}
{{- define "streamer.csvMounted" -}}
{{- if and (eq .Values.source "csv") (eq .Values.csv.source "configMap") -}}true{{- end -}}
{{- end -}}

{{/*
The shipped CSV split into chunks of at most csv.chunkBytes bytes, at line
boundaries, each a complete CSV with the header row: a JSON list of
strings. One ConfigMap cannot hold more than 1 MiB, and the shipped dump is
about 1.1 MB. (A quoted field spanning lines would be split; DCGM dumps have
none.)
*/}}
{{- define "streamer.csvChunks" -}}
{{- $lines := .Files.Lines .Values.csv.file -}}
{{- if not $lines -}}
{{- fail (printf "csv.file %s is missing or empty in the chart" .Values.csv.file) -}}
{{- end -}}
{{- $header := first $lines -}}
{{- $budget := int .Values.csv.chunkBytes -}}
{{- $chunks := list -}}
{{- $cur := list -}}
{{- $size := 0 -}}
{{- range $line := rest $lines -}}
{{- if trim $line -}}
{{- if and $cur (gt (add $size (len $line) 1) $budget) -}}
{{- $chunks = append $chunks (printf "%s\n%s\n" $header (join "\n" $cur)) -}}
{{- $cur = list -}}
{{- $size = 0 -}}
{{- end -}}
{{- $cur = append $cur $line -}}
{{- $size = add $size (len $line) 1 -}}
{{- end -}}
{{- end -}}
{{- if $cur -}}
{{- $chunks = append $chunks (printf "%s\n%s\n" $header (join "\n" $cur)) -}}
{{- end -}}
{{- toJson $chunks -}}
{{- end -}}

{{- define "streamer.csvName" -}}
{{- printf "%s-csv-%d" (include "tlib.fullname" .ctx) (int .index) -}}
{{- end -}}
