{{/* Name of the chart, or nameOverride. */}}
{{- define "waypost.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources: <release>-waypost, or the release name when it holds "waypost". */}}
{{- define "waypost.fullname" -}}
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

{{- define "waypost.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource of the chart. */}}
{{- define "waypost.labels" -}}
helm.sh/chart: {{ include "waypost.chart" . }}
app.kubernetes.io/name: {{ include "waypost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: waypost
{{- end }}

{{/* Selector of the operator Pods (also used by the runner NetworkPolicy). */}}
{{- define "waypost.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "waypost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "waypost.postgresqlSelectorLabels" -}}
app.kubernetes.io/name: {{ include "waypost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: postgresql
{{- end }}

{{- define "waypost.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "waypost.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "waypost.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag | toString) }}
{{- end }}

{{- define "waypost.runnerImage" -}}
{{- printf "%s:%s" .Values.runner.image.repository (default .Chart.AppVersion .Values.runner.image.tag | toString) }}
{{- end }}

{{- define "waypost.postgresqlImage" -}}
{{- printf "%s:%s" .Values.postgresql.image.repository (toString .Values.postgresql.image.tag) }}
{{- end }}

{{- define "waypost.postgresqlName" -}}
{{- printf "%s-postgresql" (include "waypost.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret holding the bundled Postgres' password. */}}
{{- define "waypost.postgresqlSecretName" -}}
{{- default (include "waypost.postgresqlName" .) .Values.postgresql.existingSecret }}
{{- end }}

{{/* Secret holding the DSN the operator reads (when Postgres is not bundled). */}}
{{- define "waypost.databaseSecretName" -}}
{{- default (printf "%s-database" (include "waypost.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* The URL runner Pods (in any namespace) use to reach the coordinator Service. */}}
{{- define "waypost.coordinatorURL" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "waypost.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.service.port) }}
{{- end }}

{{/* Namespaces that get the runner NetworkPolicy. */}}
{{- define "waypost.runnerNamespaces" -}}
{{- if .Values.networkPolicy.runnerNamespaces }}
{{- join "," .Values.networkPolicy.runnerNamespaces }}
{{- else if .Values.operator.watchNamespaces }}
{{- join "," .Values.operator.watchNamespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}
