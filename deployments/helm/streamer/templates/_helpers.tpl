{{- define "streamer.envData" -}}
{{- $w := .Values.global.mqwriter -}}
MQ_WRITER_URL: {{ printf "http://%s.%s.svc:%v" $w.name .Release.Namespace $w.port | quote }}
QUEUE_BACKEND: postgres
{{- if eq .Values.csv.source "configMap" }}
STREAMER_CSV_PATH: {{ .Values.csv.mountPath | quote }}
{{- end }}
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
