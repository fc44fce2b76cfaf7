{{/* Settings computed from other values: the token file (or MQ_AUTH=none). */}}
{{- define "mqwriter.envData" -}}
{{- (include "mqwriter.auth" . | fromYaml).env | toYaml }}
{{- end -}}

{{/* The accepted publish tokens, mounted from the Secret (tlib.tokenMount). */}}
{{- define "mqwriter.auth" -}}
{{- include "tlib.tokenMount" (dict "ctx" . "scope" "publish" "role" "server") -}}
{{- end -}}
