{{/*
The release's objects are named after the release: `helm install river-full-graph ...` makes the
SeldonDeployment river-full-graph (Seldon's predictor service is then river-full-graph-default).
*/}}
{{- define "seldon-river.fullname" -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- end -}}

{{/*
Standard labels. Deliberately no helm.sh/chart or app.kubernetes.io/managed-by: the rendered
objects are the same as manifests/*.yaml, which are applied with kubectl as they are.
*/}}
{{- define "seldon-river.labels" -}}
app.kubernetes.io/name: seldon-river
app.kubernetes.io/instance: {{ include "seldon-river.fullname" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: seldon-river
{{- end -}}

{{- define "seldon-river.selectorLabels" -}}
app.kubernetes.io/name: seldon-river
app.kubernetes.io/instance: {{ include "seldon-river.fullname" . }}
{{- end -}}

{{- define "seldon-river.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "seldon-river.redisName" -}}
{{- printf "%s-redis" (include "seldon-river.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the Redis password, "" when no password is sent. */}}
{{- define "seldon-river.redisPasswordSecret" -}}
{{- if eq .Values.state.backend "redis" -}}
{{- if .Values.state.redis.passwordSecret -}}
{{- .Values.state.redis.passwordSecret -}}
{{- else if not .Values.state.redis.url -}}
{{- printf "%s-auth" (include "seldon-river.redisName" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The learning-state URI every component gets as its state_uri parameter. */}}
{{- define "seldon-river.stateUri" -}}
{{- if eq .Values.state.backend "redis" -}}
{{- .Values.state.redis.url | default (printf "redis://%s:6379/0" (include "seldon-river.redisName" .)) -}}
{{- else -}}
sqlite:////var/lib/seldon-river/state.db
{{- end -}}
{{- end -}}

{{/*
Seldon parameter types of the components' parameters (their __init__ arguments); a parameter
not listed here is refused by values.schema.json before it gets here.
*/}}
{{- define "seldon-river.parameterTypes" -}}
model_uri: STRING
state_uri: STRING
state_name: STRING
checkpoint_every: INT
max_staleness_ms: INT
label_ttl_seconds: INT
label_capacity: INT
routed: BOOL
n_arms: INT
policy: STRING
epsilon: FLOAT
decay: FLOAT
delta: FLOAT
gamma: FLOAT
burn_in: INT
seed: INT
detector: STRING
quantile: FLOAT
threshold: FLOAT
warm_up: INT
reject: BOOL
n_trees: INT
height: INT
window_size: INT
nu: FLOAT
features: STRING
learn_fraction: FLOAT
key_feature: STRING
key_tag: STRING
create_keys: BOOL
max_keys_in_memory: INT
preload: BOOL
min_observations: INT
selection_metric: STRING
key_tags: BOOL
drift_detector: STRING
drift_options: STRING
drift_reaction: STRING
challengers: STRING
promote_after: INT
promote_margin: FLOAT
promote_window: INT
drift_trial: INT
shards: INT
shard: INT
{{- end -}}

{{/* The metadata and pod securityContext every componentSpec starts with (call with $). */}}
{{- define "seldon-river.podHead" -}}
metadata:
  labels:
    {{- include "seldon-river.labels" . | nindent 4 }}
    app.kubernetes.io/component: inference-graph
  {{- if .Values.metrics.prometheusAnnotations }}
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/path: /prometheus
  {{- end }}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 8888
    runAsGroup: 8888
    fsGroup: 8888
    seccompProfile:
      type: RuntimeDefault
{{- end -}}

{{/*
A node's Seldon parameters from a dict of name: value, sorted by name, typed from the table
above. INT values go through int64 so that large numbers are not written as 1e+06.
Call with (dict "params" $params "root" $).
*/}}
{{- define "seldon-river.parameters" -}}
{{- $types := include "seldon-river.parameterTypes" .root | fromYaml -}}
{{- range $name := keys .params | sortAlpha }}
{{- $value := index $.params $name }}
{{- $type := index $types $name | default "" }}
{{- if not $type }}{{ fail (printf "parameter %q is not one the seldon-river components accept (expected one of: %s)" $name (keys $types | sortAlpha | join ", ")) }}{{ end }}
- name: {{ $name }}
  type: {{ $type }}
  {{- if eq $type "INT" }}
  value: {{ $value | int64 | toString | quote }}
  {{- else }}
  value: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
One component container. Call with (dict "root" $ "name" NAME "class" CLASS "type" TYPE "index" N
"model" BOOL), model true for a model node, whose folder the storage initializer fills:
ports are 9000+N (REST), 9500+N (gRPC) and 6000+N (metrics) because all components share a pod.
What each setting is for is told once, in the comment heading seldondeployment.yaml.
*/}}
{{- define "seldon-river.container" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "seldon-river.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  env:
    - name: MODEL_NAME
      value: {{ .class }}
    - name: SERVICE_TYPE
      value: {{ .type }}
    {{- with include "seldon-river.redisPasswordSecret" $root }}
    - name: SELDON_RIVER_REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: password
    {{- end }}
  ports:
    - name: http
      containerPort: {{ add 9000 .index }}
      protocol: TCP
    - name: grpc
      containerPort: {{ add 9500 .index }}
      protocol: TCP
    - name: metrics
      containerPort: {{ add 6000 .index }}
      protocol: TCP
  resources:
    {{- toYaml $root.Values.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 8888
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop:
        - ALL
    seccompProfile:
      type: RuntimeDefault
  startupProbe:
    httpGet:
      path: /health/ping
      port: http
    periodSeconds: 2
    failureThreshold: 60
  readinessProbe:
    httpGet:
      path: /health/ping
      port: http
    periodSeconds: 5
    failureThreshold: 3
  livenessProbe:
    httpGet:
      path: /health/ping
      port: http
    periodSeconds: 10
    failureThreshold: 3
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: state
      mountPath: /var/lib/seldon-river
    {{- if .model }}
    - name: {{ .name }}-provision-location
      mountPath: /mnt/models
      readOnly: true
    {{- end }}
{{- end -}}

{{/*
The storage initializer of one model (call with (dict "root" $ "model" MODEL)): what Seldon's
operator would inject for it, under the name the operator looks for, locked down.
*/}}
{{- define "seldon-river.storageInitializer" -}}
{{- $root := .root -}}
{{- $si := $root.Values.modelServer.storageInitializer -}}
- name: {{ .model.name }}-model-initializer
  image: {{ $si.image }}
  imagePullPolicy: IfNotPresent
  args:
    - {{ .model.modelUri }}
    - /mnt/models
  {{- with $root.Values.modelServer.rcloneSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  resources:
    {{- toYaml $si.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    capabilities:
      drop:
        - ALL
  volumeMounts:
    - name: {{ .model.name }}-provision-location
      mountPath: /mnt/models
{{- end -}}

{{/* Checks what the schema cannot: how the graph's parts fit together. */}}
{{- define "seldon-river.validate" -}}
{{- $n := len .Values.models -}}
{{- if .Values.sharding.enabled -}}
{{- $model := first .Values.models -}}
{{- if or .Values.router.enabled (ne $n 1) (not $model.keyed) -}}
{{- fail (printf "sharding.enabled splits one keyed model (keyed: true) over shards: set router.enabled=false and exactly one keyed model in models, got router.enabled=%v and %d models" .Values.router.enabled $n) -}}
{{- end -}}
{{- if ne .Values.state.backend "redis" -}}
{{- fail "sharding.enabled runs each shard in a pod of its own, whose learning log must outlive the pod: set state.backend=redis" -}}
{{- end -}}
{{- $keyParams := pick ($model.parameters | default dict) "key_feature" "key_tag" -}}
{{- if ne (len $keyParams) 1 -}}
{{- fail "sharding.enabled: the key router reads the key as the shards do: set exactly one of key_feature or key_tag in the keyed model's parameters" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.router.enabled (lt $n 2) -}}
{{- fail (printf "router.enabled needs two models or more in models, got %d" $n) -}}
{{- end -}}
{{- if and (not .Values.router.enabled) (not .Values.sharding.enabled) (ne $n 1) -}}
{{- fail (printf "without the router the graph has exactly one model, got %d in models (set router.enabled=true to route between them)" $n) -}}
{{- end -}}
{{- if and (eq .Values.state.backend "sqlite") (gt (int .Values.replicas) 1) -}}
{{- fail (printf "state.backend=sqlite keeps the state in one pod's file, so replicas must be 1, got %d (use state.backend=redis for more)" (int .Values.replicas)) -}}
{{- end -}}
{{- $names := list -}}
{{- if .Values.detector.enabled }}{{ $names = append $names .Values.detector.name }}{{ end -}}
{{- if .Values.router.enabled }}{{ $names = append $names .Values.router.name }}{{ end -}}
{{- if .Values.sharding.enabled -}}
{{- $names = append $names .Values.sharding.name -}}
{{- range $i := until (int .Values.sharding.shards) }}{{ $names = append $names (printf "%s-shard-%d" (first $.Values.models).name $i) }}{{ end -}}
{{- else -}}
{{- range .Values.models }}{{ $names = append $names .name }}{{ end -}}
{{- end -}}
{{- if ne (len $names) (len (uniq $names)) -}}
{{- fail (printf "graph node names must be unique, got %s" (join ", " $names)) -}}
{{- end -}}
{{- end -}}

{{/*
A graph node and, recursively, its children; keys in the order a reader looks for them. The
node is a dict built in seldondeployment.yaml; "parameters" holds rendered parameter YAML.
*/}}
{{- define "seldon-river.node" -}}
name: {{ .name }}
type: {{ .type }}
{{- with .implementation }}
implementation: {{ . }}
{{- end }}
{{- with .modelUri }}
modelUri: {{ . }}
{{- end }}
{{- with .methods }}
methods:
{{- range . }}
  - {{ . }}
{{- end }}
{{- end }}
parameters:
{{- .parameters | trim | nindent 2 }}
{{- if .children }}
children:
{{- range .children }}
  - {{ include "seldon-river.node" . | indent 4 | trim }}
{{- end }}
{{- else }}
children: []
{{- end }}
{{- end -}}
