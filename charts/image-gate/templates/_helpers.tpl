{{/*
Names and labels.
*/}}
{{- define "image-gate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "image-gate.fullname" -}}
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

{{- define "image-gate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "image-gate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "image-gate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "image-gate.labels" -}}
helm.sh/chart: {{ include "image-gate.chart" . }}
{{ include "image-gate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: image-gate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "image-gate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "image-gate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "image-gate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The handlers served by image-gate: the URL path (= kopf handler id) and the resources each one
checks. Returned as YAML; read with `include ... | fromYaml`.
*/}}
{{- define "image-gate.handlers" -}}
pods:
  - {apiGroup: "", resources: [pods], operations: [CREATE, UPDATE]}
  - {apiGroup: "", resources: [pods/ephemeralcontainers], operations: [UPDATE]}
deployments:
  - {apiGroup: apps, resources: [deployments], operations: [CREATE, UPDATE]}
statefulsets:
  - {apiGroup: apps, resources: [statefulsets], operations: [CREATE, UPDATE]}
daemonsets:
  - {apiGroup: apps, resources: [daemonsets], operations: [CREATE, UPDATE]}
replicasets:
  - {apiGroup: apps, resources: [replicasets], operations: [CREATE, UPDATE]}
jobs:
  - {apiGroup: batch, resources: [jobs], operations: [CREATE, UPDATE]}
cronjobs:
  - {apiGroup: batch, resources: [cronjobs], operations: [CREATE, UPDATE]}
{{- end }}

{{/*
The namespaces image-gate never judges (besides its own), as a YAML list; read with
`include ... | fromYamlArray`. `webhook.excludeNamespaces` is the value's former name: when a
values file from before the rename sets it, it wins, so upgrades keep their list.
*/}}
{{- define "image-gate.exemptNamespaces" -}}
{{- if hasKey .Values.webhook "excludeNamespaces" }}
{{- toYaml .Values.webhook.excludeNamespaces }}
{{- else }}
{{- toYaml .Values.webhook.exemptNamespaces }}
{{- end }}
{{- end }}

{{/*
TLS: the Secret that holds the serving certificate, and the Service DNS names it must cover.
*/}}
{{- define "image-gate.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" }}
{{- required "certificates.secret.name is required when certificates.mode is secret" .Values.certificates.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "image-gate.fullname" .) }}
{{- end }}
{{- end }}

{{- define "image-gate.serviceDnsNames" -}}
{{- $svc := include "image-gate.fullname" . }}
{{- $ns := .Release.Namespace -}}
- {{ $svc }}
- {{ printf "%s.%s" $svc $ns }}
- {{ printf "%s.%s.svc" $svc $ns }}
- {{ printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain }}
{{- end }}

{{/*
Certificate material for certificates.mode=helm, as YAML {ca, cert, key} (PEM). Computed once per
render and memoised in .Values so the Secret and the webhook configuration agree. An existing
Secret is reused (lookup), so upgrades keep the certificate; with `helm template` lookup returns
nothing and a new CA is generated every time.
*/}}
{{- define "image-gate.helmCertificate" -}}
{{- if not (hasKey .Values "__imageGateTls") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "image-gate.tlsSecretName" .) }}
{{- $tls := dict }}
{{- if and $existing $existing.data (index $existing.data "ca.crt") (index $existing.data "tls.crt") (index $existing.data "tls.key") }}
{{- $_ := set $tls "ca" (index $existing.data "ca.crt" | b64dec) }}
{{- $_ := set $tls "cert" (index $existing.data "tls.crt" | b64dec) }}
{{- $_ := set $tls "key" (index $existing.data "tls.key" | b64dec) }}
{{- else }}
{{- $days := int .Values.certificates.helm.validityDays }}
{{- $ca := genCA (printf "%s-ca" (include "image-gate.fullname" .)) $days }}
{{- $names := include "image-gate.serviceDnsNames" . | fromYamlArray }}
{{- $cert := genSignedCert (index $names 2) nil $names $days $ca }}
{{- $_ := set $tls "ca" $ca.Cert }}
{{- $_ := set $tls "cert" $cert.Cert }}
{{- $_ := set $tls "key" $cert.Key }}
{{- end }}
{{- $_ := set .Values "__imageGateTls" $tls }}
{{- end }}
{{- toYaml (get .Values "__imageGateTls") }}
{{- end }}

{{/*
Checks that values are consistent beyond what values.schema.json can express.
*/}}
{{- define "image-gate.validate" -}}
{{- /*
The longest a review can take inside image-gate, against the API server's webhook.timeoutSeconds:
  the start-up wait (1s: a review that arrives before the indexes are loaded waits this long, then
    is refused; WebhookApp.startup_wait in operator/image_gate/kube/webhook.py, not a setting)
  + config.deadlineSeconds (everything from reading the containers to the verdict's words)
  + a margin of 1s for what comes before and after the review (TLS, reading and parsing up to
    config.maxReviewBytes of JSON, writing the answer; ~0.1s for 4 MiB on a loaded 2-core node).
*/}}
{{- $startupWait := 1.0 }}
{{- $margin := 1.0 }}
{{- $review := addf $startupWait .Values.config.deadlineSeconds $margin }}
{{- if gt $review (float64 .Values.webhook.timeoutSeconds) }}
{{- fail (printf "config.deadlineSeconds (%v) + the start-up wait (%v) + a margin for TLS and JSON (%v) = %v must not exceed webhook.timeoutSeconds (%v): image-gate has to answer before the API server gives up and applies failurePolicy" .Values.config.deadlineSeconds $startupWait $margin $review .Values.webhook.timeoutSeconds) }}
{{- end }}
{{- if and (eq .Values.certificates.mode "secret") (not .Values.certificates.secret.name) }}
{{- fail "certificates.secret.name is required when certificates.mode is secret: the existing kubernetes.io/tls Secret to serve with" }}
{{- end }}
{{- if and (eq .Values.certificates.mode "secret") (not .Values.webhook.url) (not .Values.certificates.secret.caBundle) }}
{{- fail "certificates.secret.caBundle is required when certificates.mode is secret: the API server needs the CA to trust the webhook" }}
{{- end }}
{{- if and .Values.credentials.huawei.existingSecret (or (not .Values.credentials.huawei.secretKeys.accessKey) (not .Values.credentials.huawei.secretKeys.secretKey)) }}
{{- fail "credentials.huawei.secretKeys.accessKey and secretKey are required with credentials.huawei.existingSecret" }}
{{- end }}
{{- if and .Values.credentials.aliyun.existingSecret (or (not .Values.credentials.aliyun.secretKeys.accessKeyId) (not .Values.credentials.aliyun.secretKeys.accessKeySecret)) }}
{{- fail "credentials.aliyun.secretKeys.accessKeyId and accessKeySecret are required with credentials.aliyun.existingSecret" }}
{{- end }}
{{- $stopping := addf .Values.preStopSleepSeconds .Values.config.drainSeconds .Values.webhook.timeoutSeconds }}
{{- if lt (float64 .Values.terminationGracePeriodSeconds) $stopping }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must cover preStopSleepSeconds + config.drainSeconds + webhook.timeoutSeconds (%v): a pod killed sooner drops the reviews it is judging" .Values.terminationGracePeriodSeconds $stopping) }}
{{- end }}
{{- $enabled := 0 }}
{{- range $name, $on := .Values.webhook.handlers }}{{ if $on }}{{ $enabled = add1 $enabled }}{{ end }}{{ end }}
{{- if eq $enabled 0 }}
{{- fail "webhook.handlers: enable at least one handler" }}
{{- end }}
{{- end }}

{{/*
Environment variables for the cloud credentials: secretKeyRef entries, optional keys skipped.
*/}}
{{- define "image-gate.credentialEnv" -}}
{{- with .Values.credentials.huawei }}
{{- if .existingSecret }}
{{- $secret := .existingSecret }}
{{- range $env, $key := dict "HUAWEICLOUD_SDK_AK" .secretKeys.accessKey "HUAWEICLOUD_SDK_SK" .secretKeys.secretKey "HUAWEICLOUD_SDK_SECURITY_TOKEN" .secretKeys.securityToken "HUAWEICLOUD_SDK_PROJECT_ID" .secretKeys.projectId }}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.credentials.aliyun }}
{{- if .existingSecret }}
{{- $secret := .existingSecret }}
{{- range $env, $key := dict "ALIBABA_CLOUD_ACCESS_KEY_ID" .secretKeys.accessKeyId "ALIBABA_CLOUD_ACCESS_KEY_SECRET" .secretKeys.accessKeySecret "ALIBABA_CLOUD_SECURITY_TOKEN" .secretKeys.securityToken }}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
