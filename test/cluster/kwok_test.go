package cluster

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Annotations the test puts on a pod to tell the simulated kubelet how each
// container ends: kwok's pod-finish Stage below turns them into terminated
// container states. Tekton reads a step's results from its container's
// termination message, so this is how a TaskRun gets results without any
// step running.
const (
	annFinish      = "cluster-test.tekton-multiarch.dev/finish"
	annExitPrefix  = "cluster-test.tekton-multiarch.dev/exit-code."
	annMsgPrefix   = "cluster-test.tekton-multiarch.dev/message."
	resultTypeTask = 1 // result.TaskRunResultType in tektoncd/pipeline/pkg/result
)

// kwokStages is kwok's whole behaviour in this test. Nodes: kwok's own
// node-initialize and lease heartbeat stages. Pods: pod-ready is kwok's
// "fast" stage (Pending and scheduled -> Running, init containers
// completed); pod-finish, this test's own, completes a Running pod only once
// the test has annotated it, with per-container exit codes and termination
// messages from those annotations; pod-delete is kwok's.
const kwokStages = `
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}
      addresses:
      - address: {{ NodeIP | Quote }}
        type: InternalIP
      - address: {{ NodeName | Quote }}
        type: Hostname
      allocatable:
      {{ YAML .status.allocatable 1 }}
      capacity:
      {{ YAML .status.capacity 1 }}
      nodeInfo:
        architecture: {{ .status.nodeInfo.architecture | Quote }}
        operatingSystem: linux
        kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
        containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values: ['True']
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-finish
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["` + annFinish + `"]'
      operator: 'In'
      values: ['true']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $ann := .metadata.annotations }}
      {{ $failed := false }}
      containerStatuses:
      {{ range .spec.containers }}
      {{ $code := or (index $ann (printf "` + annExitPrefix + `%s" .name)) "0" }}
      {{ if ne $code "0" }}{{ $failed = true }}{{ end }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{ $code }}
            reason: {{ if eq $code "0" }}Completed{{ else }}Error{{ end }}
            message: {{ or (index $ann (printf "` + annMsgPrefix + `%s" .name)) "" | Quote }}
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
      {{ end }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        type: ContainersReady
      phase: {{ if $failed }}Failed{{ else }}Succeeded{{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
`

// stepOutcome is how one step container ends.
type stepOutcome struct {
	exitCode int
	results  map[string]string
}

// finishAnnotations encodes outcomes (by container name, e.g. step-build)
// for the pod-finish stage; the message is Tekton's termination-message
// format, as the entrypoint binary writes it.
// kwokNodes are the simulated build nodes (buildNodes): kwok keeps them Ready
// and moves their pods through the Stages above.
// extra are more nodes besides those (the load benchmark's fleet).
type kwokNodes struct{ extra []node }

func (k kwokNodes) startNodes(t testing.TB, s *stack) {
	s.startKwok(t, append(append([]node{}, buildNodes...), k.extra...))
}

func finishAnnotations(t testing.TB, outcomes map[string]stepOutcome) map[string]string {
	t.Helper()
	ann := map[string]string{annFinish: "true"}
	for container, o := range outcomes {
		type runResult struct {
			Key   string `json:"key"`
			Value string `json:"value"`
			Type  int    `json:"type"`
		}
		var msg []runResult
		for k, v := range o.results {
			msg = append(msg, runResult{Key: k, Value: v, Type: resultTypeTask})
		}
		if len(msg) > 0 {
			data, err := json.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			ann[annMsgPrefix+container] = string(data)
		}
		ann[annExitPrefix+container] = itoa(o.exitCode)
	}
	return ann
}

func itoa(i int) string {
	data, _ := json.Marshal(i)
	return string(data)
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
