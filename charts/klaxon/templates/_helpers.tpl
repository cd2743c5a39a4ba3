{{/* Names. Kubernetes names are limited to 63 characters. */}}
{{- define "klaxon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "klaxon.fullname" -}}
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

{{/* One Service carries the webhook and metrics ports; the certificate is issued for its DNS name. */}}
{{- define "klaxon.webhookServiceName" -}}
{{- include "klaxon.fullname" . }}
{{- end }}

{{- define "klaxon.webhookSecretName" -}}
{{- if .Values.webhook.existingSecret }}
{{- .Values.webhook.existingSecret }}
{{- else }}
{{- printf "%s-webhook-tls" (include "klaxon.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "klaxon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "klaxon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels. Selector labels never carry the chart or app version: selectors are immutable. */}}
{{- define "klaxon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "klaxon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "klaxon.podLabels" -}}
{{ include "klaxon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: klaxon
{{- end }}

{{- define "klaxon.imagePullSecretNames" -}}
{{- $names := list }}
{{- range .Values.imagePullSecrets }}
{{- $names = append $names .name }}
{{- end }}
{{- join "," $names }}
{{- end }}

{{- define "klaxon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "klaxon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: klaxon
{{- end }}

{{- define "klaxon.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespace of the default AlertConfig. */}}
{{- define "klaxon.defaultAlertConfigNamespace" -}}
{{- default .Release.Namespace .Values.defaultAlertConfig.namespace }}
{{- end }}

{{/*
RBAC rules. These must equal OPERATOR_RULES in operator/klaxon/kube/rbac.py:
tests/chart/test_chart_rbac.py renders the chart and compares, and tests/e2e/test_least_privilege.py
runs the operator with exactly these rights on a real API server. Split by scope because a Role
cannot grant cluster-scoped resources. No update verb: nothing is ever replaced (PUT).
*/}}
{{- define "klaxon.rules.namespaced" -}}
- apiGroups: ["klaxon.dev"]
  resources: ["alertrules"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["klaxon.dev"]
  resources: ["alertconfigs", "notificationchannels"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["klaxon.dev"]
  resources: ["alertrules/status", "alertconfigs/status", "notificationchannels/status"]
  verbs: ["patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["prometheusrules"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
{{ include "klaxon.rules.leaderElection" . }}
{{- end }}

{{/* Events and the leader-election Lease: also granted in the release namespace. */}}
{{- define "klaxon.rules.leaderElection" -}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end }}

{{- define "klaxon.rules.cluster" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Impossible combinations stop the install with a message that says what to change. */}}
{{- define "klaxon.validate" -}}
{{- $v := .Values }}
{{- if and (gt (int $v.replicas) 1) (not $v.ha.enabled) }}
{{- fail (printf "replicas=%d needs ha.enabled=true: without leader election every replica would reconcile the same objects. Set ha.enabled=true or replicas=1." (int $v.replicas)) }}
{{- end }}
{{- if and $v.ha.enabled (lt (int $v.replicas) 2) }}
{{- fail "ha.enabled=true needs replicas >= 2 (one replica has nobody to hand over to). Set replicas to 2 or more, or ha.enabled=false." }}
{{- end }}
{{- if and $v.ha.enabled (le (int $v.ha.leaseDurationSeconds) (int $v.ha.renewDeadlineSeconds)) }}
{{- fail "ha.leaseDurationSeconds must be greater than ha.renewDeadlineSeconds, or two leaders may overlap." }}
{{- end }}
{{- if and $v.ha.enabled (le (int $v.ha.renewDeadlineSeconds) (int $v.ha.retryPeriodSeconds)) }}
{{- fail "ha.renewDeadlineSeconds must be greater than ha.retryPeriodSeconds, or the leader gives up before its first retry." }}
{{- end }}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) }}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the name of an existing ServiceAccount." }}
{{- end }}
{{- if $v.webhook.enabled }}
{{- if and $v.webhook.certManager.enabled $v.webhook.existingSecret }}
{{- fail "webhook.certManager.enabled=true and webhook.existingSecret are exclusive: choose where the webhook certificate comes from." }}
{{- end }}
{{- if and $v.webhook.existingSecret (not $v.webhook.caBundle) }}
{{- fail "webhook.existingSecret needs webhook.caBundle: the base64-encoded PEM CA that signed the Secret's certificate, so the API server can trust the webhook." }}
{{- end }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.enabled=true: there is nothing to scrape." }}
{{- end }}
{{- if $v.pdb.enabled }}
{{- $maxSet := not (kindIs "invalid" $v.pdb.maxUnavailable) }}
{{- $minSet := not (kindIs "invalid" $v.pdb.minAvailable) }}
{{- if and $maxSet $minSet }}
{{- fail "pdb.maxUnavailable and pdb.minAvailable are exclusive: set the other to null." }}
{{- end }}
{{- if not (or $maxSet $minSet) }}
{{- fail "pdb.enabled=true needs pdb.maxUnavailable or pdb.minAvailable." }}
{{- end }}
{{- if and $minSet (not (kindIs "string" $v.pdb.minAvailable)) (ge (int $v.pdb.minAvailable) (int $v.replicas)) }}
{{- fail (printf "pdb.minAvailable=%d with replicas=%d would block every node drain. Lower pdb.minAvailable or raise replicas." (int $v.pdb.minAvailable) (int $v.replicas)) }}
{{- end }}
{{- end }}
{{- if and $v.defaultAlertConfig.enabled $v.watchNamespaces }}
{{- if not (has (include "klaxon.defaultAlertConfigNamespace" .) $v.watchNamespaces) }}
{{- fail (printf "defaultAlertConfig.namespace %q is not in watchNamespaces %v: the operator would never see it. Add it to watchNamespaces or change defaultAlertConfig.namespace." (include "klaxon.defaultAlertConfigNamespace" .) $v.watchNamespaces) }}
{{- end }}
{{- end }}
{{- end }}
