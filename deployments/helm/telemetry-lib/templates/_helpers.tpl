{{/*
Shared helpers of the telemetry pipeline's app charts. Every app chart has
the same values shape (see mqwriter/values.yaml); the binary it runs is the
chart's name: /app/bin/<chart name> in the one pipeline image.
*/}}

{{- define "tlib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Object names are the app's name, not "<release>-<app>": the apps find each
other by these names (mqwriter, mqreader-headless, mqreader-partitions), so
one release per namespace.
*/}}
{{- define "tlib.fullname" -}}
{{- default (include "tlib.name" .) .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tlib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tlib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tlib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Kubernetes recommended label set. */}}
{{- define "tlib.labels" -}}
helm.sh/chart: {{ include "tlib.chart" . }}
{{ include "tlib.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.component }}
app.kubernetes.io/part-of: telemetry-pipeline
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tlib.image" -}}
{{- $g := .Values.global.image | default dict -}}
{{- $repo := $g.repository | default .Values.image.repository -}}
{{- $tag := $g.tag | default .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "tlib.pullPolicy" -}}
{{- (.Values.global.image | default dict).pullPolicy | default .Values.image.pullPolicy | default "IfNotPresent" -}}
{{- end -}}

{{- define "tlib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tlib.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The Secret holding DATABASE_URL: in cnpg mode the umbrella's
"<release>-pg-<app>" (the app's own role, key uri) with
global.database.roles, else CloudNativePG's "<release>-pg-app" (the
owner); the umbrella's "<release>-database" (key url) when
global.database.url is set; else an existing Secret.
*/}}
{{- define "tlib.databaseSecret" -}}
{{- $db := .Values.global.database -}}
{{- if and (eq $db.mode "cnpg") $db.roles -}}
{{- printf "%s-pg-%s" .Release.Name .Chart.Name -}}
{{- else if eq $db.mode "cnpg" -}}
{{- printf "%s-pg-app" .Release.Name -}}
{{- else if $db.url -}}
{{- printf "%s-database" .Release.Name -}}
{{- else -}}
{{- required "set global.database.existingSecret, global.database.url or global.database.mode=cnpg" $db.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "tlib.databaseSecretKey" -}}
{{- $db := .Values.global.database -}}
{{- if eq $db.mode "cnpg" -}}uri
{{- else if $db.url -}}url
{{- else -}}{{ $db.secretKey | default "url" }}
{{- end -}}
{{- end -}}

{{/*
DATABASE_URL, the PG* variables, DATABASE_READ_URL and MIGRATE_ON_START.
External mode: DATABASE_URL from the Secret. cnpg mode: PGUSER, PGPASSWORD
and PGDATABASE from the app's Secret (pgx reads them), and DATABASE_URL
either from that Secret's uri — the app's own least-privilege role with
global.database.roles ("<release>-pg-<app>", whose uri already points at
the Pooler when global.database.pooler is on), else the owner's
"<release>-pg-app" (the -rw service) — or, for the owner through the
Pooler, the Pooler's service. apigw (component "api") also gets
DATABASE_READ_URL: the -ro replicas first, the primary when none answers.
Migrations are the Job's (a pre-install hook) except in cnpg mode, where
the database only exists after install and the Job is a post-install
hook: there the apps also migrate on start, in the background, unless they
log in with their own roles (which cannot change the schema) or go through
the Pooler (the runner's advisory lock needs a session).
*/}}
{{- define "tlib.databaseEnv" -}}
{{- $db := .Values.global.database -}}
{{- $cnpg := eq $db.mode "cnpg" -}}
{{- $roles := and $cnpg $db.roles -}}
{{- $secret := include "tlib.databaseSecret" . -}}
{{- if and $roles (not .Values.global.migrations.job) }}
{{- fail "global.database.roles needs global.migrations.job: the apps' roles cannot migrate" }}
{{- end }}
{{- if $cnpg }}
{{- range $var, $key := dict "PGUSER" "username" "PGPASSWORD" "password" "PGDATABASE" "dbname" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- if and $cnpg $db.pooler (not $roles) }}
- name: DATABASE_URL
  value: {{ printf "postgres://%s-pg-pooler-rw:5432" .Release.Name | quote }}
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "tlib.databaseSecretKey" . }}
{{- end }}
{{- if and $cnpg $db.readReplicas (eq (.Values.component | default "") "api") }}
- name: DATABASE_READ_URL
  value: {{ printf "postgres://%s-pg-ro:5432,%s-pg-rw:5432?target_session_attrs=prefer-standby" .Release.Name .Release.Name | quote }}
{{- end }}
- name: MIGRATE_ON_START
  value: {{ and (not $roles) (or (and $cnpg (not $db.pooler)) (not .Values.global.migrations.job)) | quote }}
{{- end -}}

{{/*
The app's environment ConfigMap: HTTP_ADDR, LOG_LEVEL, the chart's
"<chart>.envData" (computed settings) and .Values.config (free-form).
*/}}
{{- define "tlib.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "tlib.fullname" . }}-env
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "tlib.labels" . | nindent 4 }}
data:
  HTTP_ADDR: {{ printf ":%v" .Values.port | quote }}
  LOG_LEVEL: {{ .Values.global.logLevel | default .Values.logLevel | quote }}
  {{- $computed := include (printf "%s.envData" .Chart.Name) . | fromYaml }}
  {{- range $k, $v := merge (deepCopy (.Values.config | default dict)) $computed }}
  {{ $k }}: {{ $v | toString | quote }}
  {{- end }}
{{- end -}}

{{/*
A pod template. Arguments (a dict): ctx (the chart's context), env (extra
EnvVar list), volumes, mounts, annotations, automountToken.
*/}}
{{- define "tlib.podTemplate" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
metadata:
  labels:
    {{- include "tlib.selectorLabels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ $v.component }}
    app.kubernetes.io/part-of: telemetry-pipeline
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "tlib.configmap" $ | sha256sum }}
    {{- if $v.metrics.scrape }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.port | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with .annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "tlib.serviceAccountName" $ }}
  automountServiceAccountToken: {{ .automountToken | default false }}
  enableServiceLinks: false
  {{- with concat ($v.global.imagePullSecrets | default list) ($v.imagePullSecrets | default list) }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  containers:
    - name: {{ $.Chart.Name }}
      image: {{ include "tlib.image" $ }}
      imagePullPolicy: {{ include "tlib.pullPolicy" $ }}
      command: ["/app/bin/{{ $.Chart.Name }}"]
      ports:
        - name: http
          containerPort: {{ $v.port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "tlib.fullname" $ }}-env
      {{- /* GOMAXPROCS follows the CPU request, rounded up (250m → 1): with
      no CPU limit Go would size itself to the whole node, and a node of
      many small Go processes each running node-many threads spends its
      CPU in the scheduler (docs/adr/0017). extraEnv may set it instead. */}}
      {{- $env := .env | default list }}
      {{- $own := false }}
      {{- range ($v.extraEnv | default list) }}{{ if eq .name "GOMAXPROCS" }}{{ $own = true }}{{ end }}{{ end }}
      {{- if not $own }}
      {{- $env = append $env (dict "name" "GOMAXPROCS" "valueFrom" (dict "resourceFieldRef" (dict "resource" "requests.cpu" "divisor" "1"))) }}
      {{- end }}
      {{- $env = concat $env ($v.extraEnv | default list) }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml $v.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml $v.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml $v.probes.readiness | nindent 8 }}
      {{- if $v.lifecycle.preStopSleepSeconds }}
      lifecycle:
        # Keep serving while endpoints and load balancers drop the pod: the
        # kubelet sleeps before SIGTERM (no shell needed in the image).
        preStop:
          sleep:
            seconds: {{ $v.lifecycle.preStopSleepSeconds }}
      {{- end }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      {{- with .mounts }}
      volumeMounts:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- with .volumes }}
  volumes:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
spec.replicas. Without autoscaling: replicaCount. With it, the live count
(lookup) so that an upgrade never resets what the autoscaler chose; on
install (and in helm template, where lookup finds nothing) minReplicas.
Arguments: ctx, apiVersion, kind.
*/}}
{{- define "tlib.replicas" -}}
{{- $ := .ctx -}}
{{- if $.Values.autoscaling.enabled -}}
{{- $live := lookup .apiVersion .kind $.Release.Namespace (include "tlib.fullname" $) -}}
{{- if and $live $live.spec (hasKey $live.spec "replicas") -}}
{{- $live.spec.replicas | int -}}
{{- else -}}
{{- $.Values.autoscaling.minReplicas | int -}}
{{- end -}}
{{- else -}}
{{- $.Values.replicaCount | int -}}
{{- end -}}
{{- end -}}

{{- define "tlib.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "tlib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "tlib.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  ports:
    - name: http
      port: {{ .Values.port }}
      targetPort: http
      protocol: TCP
  selector:
    {{- include "tlib.selectorLabels" . | nindent 4 }}
{{- end -}}

{{- define "tlib.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "tlib.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "tlib.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}

{{/*
A PodDisruptionBudget allowing one pod down at a time. maxUnavailable, not
minAvailable: with one replica minAvailable=1 would block node drains.
*/}}
{{- define "tlib.pdb" -}}
{{- if .Values.pdb.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "tlib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "tlib.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .Values.pdb.maxUnavailable }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "tlib.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{/* A ratio (0.85) as a Kubernetes quantity in thousandths ("850m"). */}}
{{- define "tlib.milli" -}}
{{- printf "%dm" (round (mulf . 1000) 0 | int) -}}
{{- end -}}

{{/*
HPA behavior. Scale up at once (a full buffer means 429s now), by at most
100% or 4 pods a minute; scale down slowly, after a stabilization window.
With a buffer metric the band is scale up above bufferUtilization.scaleUpAbove
and down below scaleDownBelow: the target is scaleUpAbove and the
scale-down tolerance 1 - below/above (the HPAConfigurableTolerance field,
beta in Kubernetes 1.35; older API servers drop it and use the cluster's
10% tolerance, so the window alone damps scale-down).
*/}}
{{- define "tlib.behavior" -}}
{{- $a := .Values.autoscaling -}}
{{- $b := $a.behavior -}}
scaleUp:
  stabilizationWindowSeconds: {{ $b.scaleUp.stabilizationWindowSeconds }}
  {{- if $a.bufferUtilization.enabled }}
  tolerance: {{ include "tlib.milli" $b.scaleUp.tolerance | quote }}
  {{- end }}
  selectPolicy: Max
  policies:
    - type: Percent
      value: {{ $b.scaleUp.percent }}
      periodSeconds: 60
    - type: Pods
      value: {{ $b.scaleUp.pods }}
      periodSeconds: 60
scaleDown:
  stabilizationWindowSeconds: {{ $b.scaleDown.stabilizationWindowSeconds }}
  {{- if $a.bufferUtilization.enabled }}
  tolerance: {{ include "tlib.milli" (subf 1 (divf $a.bufferUtilization.scaleDownBelow $a.bufferUtilization.scaleUpAbove)) | quote }}
  {{- end }}
  selectPolicy: Min
  policies:
    - type: Pods
      value: {{ $b.scaleDown.pods }}
      periodSeconds: 60
{{- end -}}

{{/*
HorizontalPodAutoscaler (autoscaling/v2) on CPU and, when enabled, on the
app's buffer utilization, a Pods metric served by prometheus-adapter (the
umbrella ships its rules). Arguments: ctx, kind.
*/}}
{{- define "tlib.hpa" -}}
{{- $ := .ctx -}}
{{- $a := $.Values.autoscaling -}}
{{- if and $a.enabled (eq ($a.engine | default "hpa") "hpa") -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "tlib.fullname" $ }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "tlib.labels" $ | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ include "tlib.fullname" $ }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- if $a.bufferUtilization.enabled }}
    - type: Pods
      pods:
        metric:
          name: {{ $a.bufferUtilization.metricName }}
        target:
          type: AverageValue
          averageValue: {{ include "tlib.milli" $a.bufferUtilization.scaleUpAbove | quote }}
    {{- end }}
  behavior:
    {{- include "tlib.behavior" $ | nindent 4 }}
{{- end -}}
{{- end -}}

{{/*
KEDA ScaledObject (autoscaling.engine=keda) with the same triggers: CPU and
the buffer utilization queried from Prometheus. The query sums the pods'
ratios; KEDA's AverageValue divides by the replica count, so the threshold
applies to the average. Arguments: ctx, kind.
*/}}
{{- define "tlib.scaledObject" -}}
{{- $ := .ctx -}}
{{- $a := $.Values.autoscaling -}}
{{- if and $a.enabled (eq ($a.engine | default "hpa") "keda") -}}
{{- $name := include "tlib.fullname" $ -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "tlib.labels" $ | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ $name }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  pollingInterval: {{ $a.keda.pollingInterval }}
  cooldownPeriod: {{ $a.keda.cooldownPeriod }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        {{- include "tlib.behavior" $ | nindent 8 }}
  triggers:
    - type: cpu
      metricType: Utilization
      metadata:
        value: {{ $a.targetCPUUtilizationPercentage | quote }}
    {{- if $a.bufferUtilization.enabled }}
    - type: prometheus
      metricType: AverageValue
      metadata:
        serverAddress: {{ required "autoscaling.keda.prometheusAddress is required with engine=keda" $a.keda.prometheusAddress }}
        query: {{ printf "sum(avg_over_time(%s{namespace=%q,pod=~%q}[1m]))" $a.bufferUtilization.metricName $.Release.Namespace (printf "%s-.*" $name) | quote }}
        threshold: {{ $a.bufferUtilization.scaleUpAbove | toString | quote }}
    {{- end }}
{{- end -}}
{{- end -}}
