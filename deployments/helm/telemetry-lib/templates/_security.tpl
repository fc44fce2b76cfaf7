{{/*
Security helpers of the app charts: default-deny NetworkPolicies, the
queue's token Secrets (generated once, then kept: lookup) and their mounts.
See docs/kubernetes.md ("Network policies", "Queue tokens").
*/}}

{{/*
The NetworkPolicy settings: global.networkPolicy over these defaults, so
an app chart installed alone needs no values. The umbrella's values.yaml
documents every key.
*/}}
{{- define "tlib.networkPolicyDefaults" -}}
enabled: true
# Where cluster DNS runs (CoreDNS / kube-dns). With NodeLocal DNSCache use
# an ipBlock of its address (169.254.20.10/32).
dns:
  to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
# Who may scrape /metrics (on the app's one HTTP port).
prometheus:
  from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: monitoring
# External PostgreSQL (mode external): [] = any address, on port only.
database:
  to: []
  port: 5432
# The API server, for the partition controller and a discovering streamer:
# [] = any address, on these ports (the kubernetes Service's endpoints).
kubeAPI:
  to: []
  ports:
    - port: 443
      protocol: TCP
    - port: 6443
      protocol: TCP
# NATS (QUEUE_BACKEND=nats): egress of the queue's clients and servers.
nats:
  enabled: false
  to: []
  port: 4222
{{- end -}}

{{- define "tlib.networkPolicyValues" -}}
{{- $g := .Values.global | default dict -}}
{{- toYaml (mergeOverwrite (include "tlib.networkPolicyDefaults" . | fromYaml) (deepCopy ($g.networkPolicy | default dict))) -}}
{{- end -}}

{{/* A peer selecting one app's pods of this release. Arguments: ctx, name. */}}
{{- define "tlib.appPeer" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/name: {{ .name }}
    app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{/* The egress rule to cluster DNS. Argument: the chart's context. */}}
{{- define "tlib.dnsEgress" -}}
{{- $np := include "tlib.networkPolicyValues" . | fromYaml -}}
- to:
    {{- toYaml $np.dns.to | nindent 4 }}
  ports:
    {{- toYaml $np.dns.ports | nindent 4 }}
{{- end -}}

{{/*
The PostgreSQL peers: the CloudNativePG cluster's pods (and a CloudNativePG
Pooler's, which carry cnpg.io/poolerName) in cnpg mode, else
networkPolicy.database.to. Argument: the chart's context.
*/}}
{{- define "tlib.databaseEgress" -}}
{{- $np := include "tlib.networkPolicyValues" . | fromYaml -}}
- ports:
    - port: {{ $np.database.port }}
      protocol: TCP
  {{- if eq .Values.global.database.mode "cnpg" }}
  to:
    - podSelector:
        matchLabels:
          cnpg.io/cluster: {{ .Release.Name }}-pg
    - podSelector:
        matchExpressions:
          - key: cnpg.io/poolerName
            operator: Exists
  {{- else if $np.database.to }}
  to:
    {{- toYaml $np.database.to | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
A default-deny NetworkPolicy for the chart's pods: both policy types, so
everything not listed is refused. Always allowed: Prometheus on the app's
port, DNS. Arguments (a dict): ctx, ingress and egress (extra rules), db
(PostgreSQL egress), queue (NATS egress when enabled), kubeAPI (API server
egress). The chart's networkPolicy.extraIngress / extraEgress are appended.
*/}}
{{- define "tlib.networkPolicy" -}}
{{- $ := .ctx -}}
{{- $np := include "tlib.networkPolicyValues" $ | fromYaml -}}
{{- if $np.enabled -}}
{{- $own := $.Values.networkPolicy | default dict -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "tlib.fullname" $ }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "tlib.labels" $ | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "tlib.selectorLabels" $ | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- with .ingress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    - from:
        {{- toYaml $np.prometheus.from | nindent 8 }}
      ports:
        - port: {{ $.Values.port }}
          protocol: TCP
    {{- with $own.extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  egress:
    {{- include "tlib.dnsEgress" $ | nindent 4 }}
    {{- if .db }}
    {{- include "tlib.databaseEgress" $ | nindent 4 }}
    {{- end }}
    {{- if and .queue $np.nats.enabled }}
    - ports:
        - port: {{ $np.nats.port }}
          protocol: TCP
      {{- with $np.nats.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- if .kubeAPI }}
    - ports:
        {{- toYaml $np.kubeAPI.ports | nindent 8 }}
      {{- with $np.kubeAPI.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- with .egress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $own.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
{{- end -}}

{{/*
Queue authentication settings: global.auth over the defaults. Tokens are on
unless auth.enabled is false (then the servers run with MQ_AUTH=none).
*/}}
{{- define "tlib.authValues" -}}
{{- $g := .Values.global | default dict -}}
{{- $d := dict "enabled" true "publish" (dict "existingSecret" "") "consume" (dict "existingSecret" "") -}}
{{- toYaml (mergeOverwrite $d (deepCopy ($g.auth | default dict))) -}}
{{- end -}}

{{/*
The Secret holding a scope's tokens: auth.<scope>.existingSecret, else
"<server>-tokens" (mqwriter-tokens for publish, mqreader-tokens for
consume), rendered by the server's chart. Arguments: ctx, scope.
*/}}
{{- define "tlib.tokenSecretName" -}}
{{- $a := include "tlib.authValues" .ctx | fromYaml -}}
{{- $server := ternary "mqwriter" "mqreader" (eq .scope "publish") -}}
{{- $name := dig $server "name" $server (.ctx.Values.global | default dict) -}}
{{- (index $a .scope).existingSecret | default (printf "%s-tokens" $name) -}}
{{- end -}}

{{/*
A value of a Secret as it is in the cluster (decoded), or "" (on install,
and in helm template, where lookup finds nothing). Arguments: ctx, name, key.
*/}}
{{- define "tlib.liveSecretValue" -}}
{{- $live := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- with dig "data" .key "" ($live | default dict) }}{{ b64dec . }}{{ end -}}
{{- end -}}

{{/*
The token Secret of a scope, unless an existing Secret is named: key
"tokens" (every token the server accepts, one per line) and key "token"
(the one its clients send). Generated on install (48 random alphanumerics,
about 285 bits); afterwards the live values are rendered again, so upgrades
keep them, and so does a rotation edited into the Secret. Arguments: ctx,
scope.
*/}}
{{- define "tlib.tokenSecret" -}}
{{- $ := .ctx -}}
{{- $a := include "tlib.authValues" $ | fromYaml -}}
{{- if and $a.enabled (not (index $a .scope).existingSecret) -}}
{{- $name := include "tlib.tokenSecretName" . -}}
{{- $token := include "tlib.liveSecretValue" (dict "ctx" $ "name" $name "key" "token") | default (randAlphaNum 48) -}}
{{- $tokens := include "tlib.liveSecretValue" (dict "ctx" $ "name" $name "key" "tokens") | default (printf "%s\n" $token) -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "tlib.labels" $ | nindent 4 }}
  annotations:
    telemetry.gpufleet.io/scope: {{ .scope }}
type: Opaque
data:
  token: {{ $token | b64enc }}
  tokens: {{ $tokens | b64enc }}
{{- end -}}
{{- end -}}

{{/*
How an app gets its queue token: the Secret's key mounted as a file under
/var/run/secrets/telemetry and the *_FILE variable naming it. A server
(role "server") reads every accepted token (MQ_PUBLISH_TOKENS_FILE,
MQ_CONSUME_TOKENS_FILE); a client ("client") the one it sends
(MQ_PUBLISH_TOKEN_FILE, MQ_CONSUME_TOKEN_FILE). With auth off: MQ_AUTH=none
for servers, nothing for clients. Arguments: ctx, scope, role. Returns
YAML: {env: {...}, volumes: [...], mounts: [...]}.
*/}}
{{- define "tlib.tokenMount" -}}
{{- $a := include "tlib.authValues" .ctx | fromYaml -}}
{{- $server := eq .role "server" -}}
{{- $out := dict "env" dict "volumes" list "mounts" list -}}
{{- if $a.enabled -}}
{{- $file := printf "%s-%s" .scope (ternary "tokens" "token" $server) -}}
{{- $dir := "/var/run/secrets/telemetry" -}}
{{- $var := printf "MQ_%s_%s_FILE" (upper .scope) (ternary "TOKENS" "TOKEN" $server) -}}
{{- $_ := set $out "env" (dict $var (printf "%s/%s" $dir $file)) -}}
{{- $secret := dict "secretName" (include "tlib.tokenSecretName" .) "defaultMode" 288 "items" (list (dict "key" (ternary "tokens" "token" $server) "path" $file)) -}}
{{- $_ = set $out "volumes" (list (dict "name" "queue-token" "secret" $secret)) -}}
{{- $_ = set $out "mounts" (list (dict "name" "queue-token" "mountPath" $dir "readOnly" true)) -}}
{{- else if $server -}}
{{- $_ := set $out "env" (dict "MQ_AUTH" "none") -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
