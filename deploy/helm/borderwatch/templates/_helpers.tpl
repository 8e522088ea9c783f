{{/* Names and labels. */}}
{{- define "borderwatch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "borderwatch.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "borderwatch.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "borderwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "borderwatch.secretName" -}}
{{- printf "%s-secrets" (include "borderwatch.fullname" .) -}}
{{- end -}}

{{/* Checks that make a bad configuration fail at render time, naming the value. */}}
{{- define "borderwatch.validate" -}}
{{- $k := .Values.kafka -}}
{{- if not $k.bootstrap -}}
{{- fail "kafka.bootstrap: required (host:port[,host:port...] of the Kafka cluster)" -}}
{{- end -}}
{{- if not (has $k.securityProtocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail (printf "kafka.securityProtocol: %q is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL" $k.securityProtocol) -}}
{{- end -}}
{{- if hasPrefix "SASL_" $k.securityProtocol -}}
{{- if not $k.sasl.username -}}
{{- fail (printf "kafka.sasl.username: required with kafka.securityProtocol=%s" $k.securityProtocol) -}}
{{- end -}}
{{- if not (or $k.sasl.existingSecret $k.sasl.password) -}}
{{- fail (printf "kafka.sasl.existingSecret or kafka.sasl.password: required with kafka.securityProtocol=%s" $k.securityProtocol) -}}
{{- end -}}
{{- else if or $k.sasl.username $k.sasl.password $k.sasl.existingSecret $k.sasl.mechanism -}}
{{- fail (printf "kafka.sasl.*: set, but kafka.securityProtocol=%s does not use SASL (set SASL_PLAINTEXT or SASL_SSL)" $k.securityProtocol) -}}
{{- end -}}
{{- if and (or $k.tls.caSecret $k.tls.clientCertSecret) (not (has $k.securityProtocol (list "SSL" "SASL_SSL"))) -}}
{{- fail (printf "kafka.tls.*: set, but kafka.securityProtocol=%s does not use TLS (set SSL or SASL_SSL)" $k.securityProtocol) -}}
{{- end -}}
{{- $am := .Values.api.alertmanager -}}
{{- if and (or $am.username $am.password $am.bearerToken $am.existingSecret $am.caSecret) (not $am.url) -}}
{{- fail "api.alertmanager.*: credentials or a CA are set but api.alertmanager.url is not" -}}
{{- end -}}
{{- if and $am.username (not (or $am.password $am.existingSecret)) -}}
{{- fail "api.alertmanager.username: needs api.alertmanager.password or api.alertmanager.existingSecret" -}}
{{- end -}}
{{- if and $am.username $am.bearerToken -}}
{{- fail "api.alertmanager.bearerToken: give it or api.alertmanager.username/password, not both" -}}
{{- end -}}
{{- if and $am.caSecret (not (hasPrefix "https://" $am.url)) -}}
{{- fail (printf "api.alertmanager.caSecret: needs an https:// api.alertmanager.url, got %q" $am.url) -}}
{{- end -}}
{{- end -}}

{{/* BW_ variables every service reads (CommonSettings). */}}
{{- define "borderwatch.commonEnv" -}}
- name: BW_KAFKA_BOOTSTRAP
  value: {{ .Values.kafka.bootstrap | quote }}
- name: BW_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- with .Values.kafka.sasl.mechanism }}
- name: BW_KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
{{- end }}
- name: BW_KAFKA_SASL_USERNAME
  value: {{ .Values.kafka.sasl.username | quote }}
- name: BW_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
{{- if .Values.kafka.sasl.existingSecret }}
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.existingSecretKey }}
{{- else }}
      name: {{ include "borderwatch.secretName" . }}
      key: kafka-sasl-password
{{- end }}
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
- name: BW_KAFKA_SSL_CAFILE
  value: /etc/borderwatch/kafka-ca/ca.crt
{{- end }}
{{- if .Values.kafka.tls.clientCertSecret }}
- name: BW_KAFKA_SSL_CERTFILE
  value: /etc/borderwatch/kafka-client/tls.crt
- name: BW_KAFKA_SSL_KEYFILE
  value: /etc/borderwatch/kafka-client/tls.key
{{- end }}
- name: BW_TOPIC_PREFIX
  value: {{ .Values.topicPrefix | quote }}
- name: BW_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: BW_SECTIONS_FILE
  value: /etc/borderwatch/config/sections.yaml
{{- end -}}

{{/* Extra BW_ variables of one component: (dict "env" .Values.api.env). */}}
{{- define "borderwatch.extraEnv" -}}
{{- range $name, $value := .env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end -}}
{{- end -}}

{{/* Volumes every pod has: the operator data, /tmp, and the Kafka TLS files. */}}
{{- define "borderwatch.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "borderwatch.fullname" . }}-config
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items:
      - key: {{ .Values.kafka.tls.caSecretKey }}
        path: ca.crt
{{- end }}
{{- if .Values.kafka.tls.clientCertSecret }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafka.tls.clientCertSecret }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "borderwatch.commonMounts" -}}
- name: config
  mountPath: /etc/borderwatch/config
  readOnly: true
# Python's tempfile, and anything else that writes: the root filesystem is read-only.
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/borderwatch/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.clientCertSecret }}
- name: kafka-client
  mountPath: /etc/borderwatch/kafka-client
  readOnly: true
{{- end }}
{{- end -}}

{{/* The tokens file for ingest and the API: a directory mount (no subPath), so that
     the kubelet's updates of the Secret reach the running processes. */}}
{{- define "borderwatch.tokensVolume" -}}
- name: tokens
  secret:
    secretName: {{ .Values.tokens.existingSecret | default (include "borderwatch.secretName" .) }}
    defaultMode: 0400
    items:
      - key: tokens.json
        path: tokens.json
{{- end -}}

{{- define "borderwatch.pod" -}}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
# The services never call the Kubernetes API.
automountServiceAccountToken: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* startup, liveness and readiness probes on a named port. */}}
{{- define "borderwatch.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}
