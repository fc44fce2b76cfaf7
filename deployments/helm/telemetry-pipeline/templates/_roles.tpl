{{/*
PostgreSQL roles in cnpg mode with global.database.roles: the schema owner
(CloudNativePG's application owner, database.cnpg.owner) is the migrator;
each app that uses the database logs in as its own role, telemetry_<app>,
with the rights files/grants.sql gives it (the migration Job applies them).
*/}}

{{- define "tp.roles" -}}
{{- and (eq .Values.global.database.mode "cnpg") .Values.global.database.roles -}}
{{- end -}}

{{/* The apps with a role, and the roles each is a member of. */}}
{{- define "tp.roleApps" -}}
mqwriter: []
mqreader: []
collector: [owner]
apigw: []
{{- end -}}

{{/* The Secret of an app's role: "<release>-pg-<app>" (tlib.databaseSecret). */}}
{{- define "tp.roleSecretName" -}}
{{- printf "%s-pg-%s" .ctx.Release.Name .app -}}
{{- end -}}


{{/* A container of the migration Job. Arguments: ctx, name, command, mounts. */}}
{{- define "tp.migrateContainer" -}}
{{- $ := .ctx -}}
- name: {{ .name }}
  image: {{ include "tp.image" $ }}
  imagePullPolicy: {{ $.Values.global.image.pullPolicy }}
  command: {{ toJson .command }}
  env:
    - name: DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ include "tp.databaseSecret" $ }}
          key: {{ include "tp.databaseSecretKey" $ }}
  resources:
    {{- toYaml $.Values.migrationJob.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
  {{- with .mounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
