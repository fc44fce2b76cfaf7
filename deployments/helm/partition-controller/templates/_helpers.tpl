{{- define "partition-controller.envData" -}}
STATEFULSET: {{ .Values.global.mqreader.name | quote }}
CONFIGMAP: {{ printf "%s-partitions" .Values.global.mqreader.name | quote }}
LEADER_ELECT: "true"
LEADER_ELECTION_ID: {{ .Values.leaderElection.leaseName | quote }}
{{- end -}}
