{{- define "mqreader.envData" -}}
PARTITIONS_FILE: /etc/mqreader/partitions.json
{{- with (include "mqreader.auth" . | fromYaml).env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The accepted consume tokens, mounted from the Secret (tlib.tokenMount). */}}
{{- define "mqreader.auth" -}}
{{- include "tlib.tokenMount" (dict "ctx" . "scope" "consume" "role" "server") -}}
{{- end -}}

{{- define "mqreader.partitionsName" -}}
{{- include "tlib.fullname" . }}-partitions
{{- end -}}

{{- define "mqreader.headlessName" -}}
{{- include "tlib.fullname" . }}-headless
{{- end -}}

{{/*
The initial partition assignment for the rendered replica count, byte for
byte what the partition controller writes (domain.Assign + encoding/json:
keys sorted, ranges "first-last", the first 256 % n ranges one longer). A
test in test/k8s compares it with the Go code. Argument: ctx, replicas.
*/}}
{{- define "mqreader.assignment" -}}
{{- $name := include "tlib.fullname" .ctx -}}
{{- $n := int .replicas -}}
{{- $size := div 256 $n -}}
{{- $extra := mod 256 $n -}}
{{- $first := 0 -}}
{{- $ranges := dict -}}
{{- range $i := until $n -}}
{{- $l := $size -}}
{{- if lt $i $extra }}{{ $l = add1 $size }}{{ end -}}
{{- $_ := set $ranges (printf "%s-%d" $name $i) (printf "%d-%d" $first (sub (add $first $l) 1)) -}}
{{- $first = add $first $l -}}
{{- end -}}
{{- printf "{\"replicas\":%d,\"ranges\":%s}" $n (toJson $ranges) -}}
{{- end -}}

{{/*
The partitions.json the chart renders: once the ConfigMap exists the
controller owns its content, so an upgrade renders the live value and never
fights it; on install (and in helm template) the assignment for the
rendered replica count.
*/}}
{{- define "mqreader.partitionsJSON" -}}
{{- $live := lookup "v1" "ConfigMap" .Release.Namespace (include "mqreader.partitionsName" .) -}}
{{- if and $live $live.data (hasKey $live.data "partitions.json") -}}
{{- index $live.data "partitions.json" -}}
{{- else -}}
{{- include "mqreader.assignment" (dict "ctx" . "replicas" (include "tlib.replicas" (dict "ctx" . "apiVersion" "apps/v1" "kind" "StatefulSet"))) -}}
{{- end -}}
{{- end -}}

{{/*
The pod-template checksum annotation: the live value once the controller
has set it (so upgrades never roll the readers by themselves), else the
SHA-256 of the initial assignment, which is the controller's checksum of
the same bytes, so a fresh install does not roll either.
*/}}
{{- define "mqreader.partitionsChecksum" -}}
{{- $live := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "tlib.fullname" .) -}}
{{- $annotations := dig "spec" "template" "metadata" "annotations" dict ($live | default dict) -}}
{{- if hasKey $annotations "telemetry.gpufleet.io/partitions-checksum" -}}
{{- index $annotations "telemetry.gpufleet.io/partitions-checksum" -}}
{{- else -}}
{{- include "mqreader.partitionsJSON" . | sha256sum -}}
{{- end -}}
{{- end -}}
