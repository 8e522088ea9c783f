{{/* Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget of an HTTP
     service (ingest, API). Arguments: root, component, values, module, port,
     args (extra uvicorn flags), env / mounts / volumes (rendered YAML lists, may be ""). */}}
{{- define "borderwatch.http" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := printf "%s-%s" (include "borderwatch.fullname" $root) .component -}}
{{- $selector := include "borderwatch.selector" (dict "root" $root "component" .component) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "borderwatch.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "borderwatch.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .port | quote }}
        prometheus.io/path: /metrics
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "borderwatch.pod" (dict "root" $root "values" $v) | nindent 6 }}
      {{- with $v.terminationGracePeriodSeconds }}
      terminationGracePeriodSeconds: {{ . }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "borderwatch.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # No access log, uvicorn at warning: a feed's ?token= must never reach a log line.
          command:
            - uvicorn
            - {{ printf "%s:create_app" .module }}
            - --factory
            - --host
            - 0.0.0.0
            - --port
            - {{ .port | quote }}
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            - --no-access-log
            - --log-level
            - warning
          env:
            {{- include "borderwatch.commonEnv" $root | nindent 12 }}
            - name: BW_AUTH_ENABLED
              value: "true"
            - name: BW_TOKENS_FILE
              value: /etc/borderwatch/tokens/tokens.json
            # The Secret is read-only: "last used" goes to the pod's /tmp (per pod).
            - name: BW_TOKENS_LAST_USED_FILE
              value: /tmp/tokens.last-used.json
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $v.env }}
            {{- include "borderwatch.extraEnv" (dict "env" .) | nindent 12 }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
          {{- include "borderwatch.probes" (dict "port" "http") | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "borderwatch.commonMounts" $root | nindent 12 }}
            - name: tokens
              mountPath: /etc/borderwatch/tokens
              readOnly: true
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "borderwatch.commonVolumes" $root | nindent 8 }}
        {{- include "borderwatch.tokensVolume" $root | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "borderwatch.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- $selector | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "borderwatch.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "borderwatch.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
{{- end -}}
