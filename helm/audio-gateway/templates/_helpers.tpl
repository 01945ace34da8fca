{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "audio-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, unless it already contains the chart name.
*/}}
{{- define "audio-gateway.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "audio-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object the chart owns, whatever its component.
*/}}
{{- define "audio-gateway.commonLabels" -}}
helm.sh/chart: {{ include "audio-gateway.chart" . }}
app.kubernetes.io/name: {{ include "audio-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ (include "audio-gateway.imageTag" .) | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: audio-gateway
{{- end }}

{{/*
Labels of the gateway's objects.
*/}}
{{- define "audio-gateway.labels" -}}
{{ include "audio-gateway.commonLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{/*
Selector labels: stable across upgrades, since a Deployment's selector is immutable. The component keeps the
`helm test` pod (component: test) out of the Service.
*/}}
{{- define "audio-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "audio-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "audio-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "audio-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "audio-gateway.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "audio-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "audio-gateway.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
A config file value as YAML text: strings are taken verbatim, maps are serialized.
*/}}
{{- define "audio-gateway.configText" -}}
{{- if kindIs "string" . }}
{{- trimSuffix "\n" . }}
{{- else }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Whether the chart renders the Secret holding provider keys and/or the policies file.
*/}}
{{- define "audio-gateway.renderEnvSecret" -}}
{{- if and .Values.secret.env (not .Values.secret.existingSecret) }}true{{ end }}
{{- end }}

{{- define "audio-gateway.renderPoliciesSecret" -}}
{{- if and .Values.secret.policies.enabled (not .Values.secret.policies.existingSecret) .Values.config.policies }}true{{ end }}
{{- end }}

{{- define "audio-gateway.envSecretName" -}}
{{- default (printf "%s-env" (include "audio-gateway.fullname" .)) .Values.secret.existingSecret }}
{{- end }}

{{- define "audio-gateway.policiesSecretName" -}}
{{- default (printf "%s-policies" (include "audio-gateway.fullname" .)) .Values.secret.policies.existingSecret }}
{{- end }}

{{/*
Whether a policies file is mounted at all, and from where.
*/}}
{{- define "audio-gateway.policiesFromSecret" -}}
{{- if and .Values.secret.policies.enabled (or .Values.secret.policies.existingSecret .Values.config.policies) }}true{{ end }}
{{- end }}

{{- define "audio-gateway.policiesPath" -}}
{{- if include "audio-gateway.policiesFromSecret" . }}
{{- printf "%s/policies/%s" .Values.config.mountPath .Values.secret.policies.key }}
{{- else }}
{{- printf "%s/config/policies.yaml" .Values.config.mountPath }}
{{- end }}
{{- end }}

{{/*
The Bitnami sub-chart's full name, by the same rule that chart uses, so its Service and Secret can be found.
*/}}
{{- define "audio-gateway.redisFullname" -}}
{{- if .Values.redis.fullnameOverride }}
{{- .Values.redis.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "redis" .Values.redis.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuse combinations that would deploy something that cannot work. The schema checks types; these are the rules
that span several values.
*/}}
{{- define "audio-gateway.validate" -}}
{{- $external := or .Values.redis.url .Values.redis.urlSecret.name }}
{{- if and .Values.redis.enabled $external }}
{{- fail "redis: set either redis.enabled (the Bitnami sub-chart) or redis.url / redis.urlSecret.name (an external Redis), not both" }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.urlSecret.name }}
{{- fail "redis: set redis.url or redis.urlSecret.name, not both" }}
{{- end }}
{{- if and .Values.redis.enabled .Values.redis.sentinel .Values.redis.sentinel.enabled (not (and .Values.redis.sentinel.masterService .Values.redis.sentinel.masterService.enabled)) }}
{{- fail "redis: with redis.sentinel.enabled, also set redis.sentinel.masterService.enabled=true: the gateway needs one address that always reaches the current master" }}
{{- end }}
{{- if and .Values.service.headless (ne .Values.service.type "ClusterIP") }}
{{- fail "service.headless needs service.type ClusterIP" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.http.enabled) }}
{{- fail "ingress.enabled needs http.enabled: the Ingress routes to the HTTP API" }}
{{- end }}
{{- if and .Values.http.enabled (eq (int .Values.http.port) (int .Values.gateway.port)) }}
{{- fail "http.port must differ from gateway.port: gRPC and HTTP listen on ports of their own" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.metrics.dashboard.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.dashboard.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.secret.policies.enabled (not .Values.secret.policies.existingSecret) (not .Values.config.policies) }}
{{- fail "secret.policies.enabled needs config.policies (rendered into the Secret) or secret.policies.existingSecret" }}
{{- end }}
{{- if and .Values.secret.env .Values.secret.existingSecret }}
{{- fail "secret: set secret.env (rendered into a Secret) or secret.existingSecret, not both" }}
{{- end }}
{{- if and .Values.models.initContainer.enabled (not .Values.models.initContainer.image.repository) }}
{{- fail "models.initContainer.enabled needs models.initContainer.image.repository" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the preStop pause, then the gateway's drain, then the margin for the ledger flush.
Derived here so it can never be shorter than the grace the gateway itself is told.
*/}}
{{- define "audio-gateway.terminationGracePeriodSeconds" -}}
{{- $grace := ceil (float64 .Values.gateway.shutdownGraceSeconds) | int }}
{{- add $grace (int .Values.gateway.preStopSleepSeconds) (int .Values.gateway.terminationGraceMarginSeconds) }}
{{- end }}
