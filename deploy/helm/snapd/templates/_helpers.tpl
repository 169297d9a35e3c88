{{/* The release's full name; it always contains "snapd", which the alert rules match as job=~".*snapd.*". */}}
{{- define "snapd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "snapd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pods' identity: what the Service, the PDB, the NetworkPolicy and the spread select. */}}
{{- define "snapd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "snapd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: daemon
{{- end -}}

{{- define "snapd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "snapd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: snapd
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "snapd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "snapd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "snapd.leaseName" -}}
{{- default (include "snapd.fullname" .) .Values.config.lease_name -}}
{{- end -}}

{{/* A setting as snapd reads it from the environment: lists comma-joined, everything a string. */}}
{{- define "snapd.settingValue" -}}
{{- if kindIs "slice" . -}}
{{- join "," . -}}
{{- else if kindIs "map" . -}}
{{- $pairs := list -}}
{{- range $key, $value := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- else if kindIs "float64" . -}}
{{- if eq (floor .) . -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* Every value an install cannot do without, all named in one error. */}}
{{- define "snapd.required" -}}
{{- $missing := list -}}
{{- if not .Values.config.velero_bucket -}}{{- $missing = append $missing "config.velero_bucket (the S3 bucket of the Velero backup storage location)" -}}{{- end -}}
{{- if not .Values.config.schedules -}}{{- $missing = append $missing "config.schedules (the Velero schedules to replicate, e.g. [daily])" -}}{{- end -}}
{{- if not .Values.config.source_region -}}{{- $missing = append $missing "config.source_region (the region of Velero's snapshots, e.g. eu-west-1)" -}}{{- end -}}
{{- if not .Values.config.destination_region -}}{{- $missing = append $missing "config.destination_region (the region of the replicas, e.g. eu-central-1)" -}}{{- end -}}
{{- if and .Values.serviceAccount.create (not .Values.serviceAccount.roleArn) -}}{{- $missing = append $missing "serviceAccount.roleArn (the IRSA role made from deploy/iam, README \"Install on EKS\")" -}}{{- end -}}
{{- if $missing -}}
{{- fail (printf "missing required values: %s" (join "; " $missing)) -}}
{{- end -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.config.leader_election) -}}
{{- fail "config.leader_election must stay true with more than one replica: two workers would copy the same snapshots twice" -}}
{{- end -}}
{{- end -}}
