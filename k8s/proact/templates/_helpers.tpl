{{/* Names, labels and the per-service pieces shared by every template. */}}

{{- define "proact.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "proact.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The deployable services: values key -> component name (binary proact-<name>).
Templates range over this map; each service's values live under its key.
*/}}
{{- define "proact.components" -}}
ingest: ingest
archive: archive
anomalyDetector: anomaly-detector
alertGateway: alert-gateway
trainer: trainer
{{- end }}

{{- define "proact.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "proact.labels" -}}
helm.sh/chart: {{ include "proact.chartLabel" . }}
app.kubernetes.io/name: {{ include "proact.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: proact
{{- end }}

{{/* Selector of one component's pods; ctx = dict "root" $ "name" component. */}}
{{- define "proact.selectorLabels" -}}
app.kubernetes.io/name: {{ include "proact.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "proact.componentLabels" -}}
{{ include "proact.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Object name of a component: <fullname>-<component>. */}}
{{- define "proact.componentName" -}}
{{- printf "%s-%s" (include "proact.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "proact.serviceAccountName" -}}
{{- if .svc.serviceAccount.create }}
{{- default (include "proact.componentName" .) .svc.serviceAccount.name }}
{{- else }}
{{- default "default" .svc.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "proact.image" -}}
{{- $g := .root.Values.image }}
{{- $repo := .svc.image.repository | default (printf "%s%s" $g.repositoryPrefix .name) }}
{{- if $g.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $g.registry) $repo }}{{ end }}
{{- $tag := .svc.image.tag | default $g.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "proact.secretName" -}}
{{- default (printf "%s-credentials" (include "proact.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{/* Which external dependencies and peers a component talks to (fixed by the design). */}}
{{- define "proact.usesMqtt" -}}{{ if eq .name "ingest" }}true{{ end }}{{- end }}
{{- define "proact.usesDatabase" -}}
{{- if has .name (list "archive" "anomaly-detector" "alert-gateway" "trainer") }}true{{ end }}
{{- if and (eq .name "ingest") (eq (toString .root.Values.ingest.allowlist) "db") }}true{{ end }}
{{- end }}
{{/* The CA file ingest reads for mqtts:// (mounted from ingest.mqttCa). */}}
{{- define "proact.mqttCaDir" -}}/etc/proact/mqtt-ca{{- end }}

{{/* Non-secret environment of a component (its ConfigMap data). */}}
{{- define "proact.configData" -}}
{{- $v := .root.Values }}
{{- if include "proact.usesMqtt" . }}
PROACT_MQTT_URL: {{ $v.config.mqttUrl | quote }}
{{- end }}
{{- if not $v.config.redisUrlFromSecret }}
PROACT_REDIS_URL: {{ $v.config.redisUrl | quote }}
{{- end }}
PROACT_ADMIN_ADDR: {{ printf "0.0.0.0:%v" .svc.ports.admin | quote }}
PROACT_GRPC_ADDR: {{ printf "0.0.0.0:%v" .svc.ports.grpc | quote }}
{{- if eq .name "alert-gateway" }}
PROACT_HTTP_ADDR: {{ printf "0.0.0.0:%v" .svc.ports.http | quote }}
PROACT_ARCHIVE_GRPC_URL: {{ printf "http://%s:%v" (include "proact.componentName" (dict "root" .root "name" "archive")) $v.archive.ports.grpc | quote }}
PROACT_REGISTRY_GRPC_URL: {{ printf "http://%s:%v" (include "proact.componentName" (dict "root" .root "name" "trainer")) $v.trainer.ports.grpc | quote }}
{{- end }}
{{- if eq .name "ingest" }}
{{- if .svc.allowlist }}
PROACT_INGEST_ALLOWLIST: {{ .svc.allowlist | quote }}
{{- end }}
{{- if .svc.mqttCa.secretName }}
PROACT_MQTT_CA_FILE: {{ printf "%s/%s" (include "proact.mqttCaDir" .) .svc.mqttCa.key | quote }}
{{- end }}
{{- end }}
{{- if eq .name "trainer" }}
{{- /* Training runs in the weekly CronJob; the Deployment serves the registry only. */}}
PROACT_TRAIN_SCHEDULE: "off"
{{- end }}
{{- if eq .name "anomaly-detector" }}
PROACT_REGISTRY_GRPC_URL: {{ printf "http://%s:%v" (include "proact.componentName" (dict "root" .root "name" "trainer")) $v.trainer.ports.grpc | quote }}
{{- end }}
PROACT_LOG_FORMAT: {{ $v.config.logFormat | quote }}
PROACT_SHARDS: {{ $v.config.shards | quote }}
RUST_LOG: {{ $v.config.rustLog | quote }}
{{- if $v.config.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ $v.config.otlpEndpoint | quote }}
OTEL_SERVICE_NAME: {{ printf "proact-%s" .name | quote }}
{{- end }}
{{- range $k, $val := .svc.env }}
{{ $k }}: {{ $val | toString | quote }}
{{- end }}
{{- end }}

{{/* Environment read from the credentials Secret. */}}
{{- define "proact.secretEnv" -}}
{{- $secret := include "proact.secretName" .root }}
{{- if .root.Values.config.redisUrlFromSecret }}
- name: PROACT_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: redis-url}}
{{- end }}
{{- if include "proact.usesDatabase" . }}
- name: PROACT_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: database-url}}
{{- end }}
{{- if include "proact.usesMqtt" . }}
- name: PROACT_MQTT_USERNAME
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: mqtt-username, optional: true}}
- name: PROACT_MQTT_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: mqtt-password, optional: true}}
{{- end }}
{{- if eq .name "ingest" }}
- name: PROACT_INGEST_GRPC_TOKEN
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: ingest-grpc-token}}
{{- end }}
{{- if eq .name "alert-gateway" }}
- name: PROACT_GATEWAY_TOKEN
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: gateway-token}}
{{- end }}
{{- if has .name (list "archive" "anomaly-detector" "trainer" "alert-gateway") }}
- name: PROACT_GRPC_TOKEN
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: internal-grpc-token}}
{{- end }}
{{- /* Model artefact signatures: the trainer's secret key, the detector's public key. Optional
only while modelSigning.required is false: a Secret without them leaves models unsigned. */}}
{{- $optional := not .root.Values.modelSigning.required }}
{{- if eq .name "trainer" }}
- name: PROACT_MODEL_SIGNING_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: model-signing-key, optional: {{ $optional }}}}
{{- end }}
{{- if eq .name "anomaly-detector" }}
- name: PROACT_MODEL_VERIFY_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: model-verify-key, optional: {{ $optional }}}}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by Deployments and the training CronJob. */}}
{{- define "proact.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "proact.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "proact.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}
