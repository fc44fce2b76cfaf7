{{/* Settings computed from other values; none for mqwriter. */}}
{{- define "mqwriter.envData" -}}
{}
{{- end -}}
