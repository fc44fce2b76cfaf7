{{- define "apigw.envData" -}}
{}
{{- end -}}
