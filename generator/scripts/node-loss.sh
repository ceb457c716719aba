#!/bin/sh
# Fail the pods of this catalog's runs that sit on a lost node, so that their
# TaskRuns end (or are retried) instead of waiting for the run's timeout.
#
# A node whose kubelet stopped posting its status (powered off, off the
# network, kubelet or containerd dead) turns Ready=Unknown; Kubernetes then
# evicts its pods, but an evicted pod stays Terminating, Running to Tekton,
# until a kubelet confirms it, which a lost node never does. This marks each
# such pod Failed (reason NodeLost, the node and its architecture in the
# message), as Kubernetes' pod garbage collector does for pods on nodes taken
# out of service: Tekton then fails the TaskRun with that message, and a
# build with retries left runs again in a new pod on a node of its
# architecture. Nodes that are Ready=False are left alone: their kubelet is
# alive and ends its pods itself. Inputs, from the environment:
#
#   NAMESPACE   the build namespace
#   PIPELINES   the Pipelines whose pods are looked at, space-separated
#               (the tekton.dev/pipeline label Tekton puts on a run's pods)
#   AFTER       seconds a node must have been Ready=Unknown before its pods
#               are failed (rides out a short network blip)
#
# Needs kubectl with get on nodes, and list on pods and get and patch on pods/status
# in NAMESPACE (in a pod, its ServiceAccount's; here, any kubeconfig kubectl
# finds), date, cut, grep, sort, tr, wc.
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

[ -n "${NAMESPACE:-}" ] || die "NAMESPACE is empty: the namespace of the runs' pods"
[ -n "${PIPELINES:-}" ] || die "PIPELINES is empty: the Pipelines whose pods to look at"
case ${AFTER:-} in
'' | *[!0-9]*) die "AFTER must be a whole number of seconds, not '${AFTER:-}'" ;;
esac

# epoch turns an RFC 3339 UTC time (2026-12-07T02:48:23Z, as the API server
# writes them) into seconds since 1970, in shell arithmetic: date -d is not
# in every image's date.
epoch() {
	t=$1
	y=${t%%-*} t=${t#*-}
	m=${t%%-*} t=${t#*-}
	d=${t%%T*} t=${t#*T}
	hh=${t%%:*} t=${t#*:}
	mm=${t%%:*} t=${t#*:}
	ss=${t%%Z*}
	# Leading zeros would make them octal.
	m=${m#0} d=${d#0} hh=${hh#0} mm=${mm#0} ss=${ss#0}
	# Days from 1970-01-01 to y-m-d (the proleptic Gregorian calendar).
	[ "$m" -gt 2 ] || y=$((y - 1))
	era=$((y / 400))
	yoe=$((y - era * 400))
	mp=$(((m + 9) % 12))
	doy=$(((153 * mp + 2) / 5 + d - 1))
	doe=$((yoe * 365 + yoe / 4 - yoe / 100 + doy))
	echo $(((era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss))
}

now=$(epoch "$(date -u +%Y-%m-%dT%H:%M:%SZ)")

selector="tekton.dev/pipeline in ($(echo "$PIPELINES" | tr -s ' ' ','))"
# One line per pod on a node that has not finished: name|node|TaskRun.
pods=$(kubectl get pods -n "$NAMESPACE" -l "$selector" --field-selector=status.phase!=Succeeded,status.phase!=Failed \
	-o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.spec.nodeName}{"|"}{.metadata.labels.tekton\.dev/taskRun}{"\n"}{end}') ||
	die "cannot list the pods in $NAMESPACE (the ServiceAccount needs list on pods there)"

# Each of their nodes once, as node|arch|since|seconds|reason when lost.
lost=$(mktemp)
trap 'rm -f "$lost" "$lost.err"' EXIT
for node in $(printf '%s\n' "$pods" | cut -d'|' -f2 | sort -u); do
	if ! line=$(kubectl get node "$node" 2>"$lost.err" \
		-o jsonpath='{.metadata.labels.kubernetes\.io/arch}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"|"}{.status.conditions[?(@.type=="Ready")].reason}'); then
		# A deleted node's pods are the pod garbage collector's: it deletes
		# them, and Tekton makes the TaskRun a new pod.
		if grep -q NotFound "$lost.err"; then
			echo "node $node is gone (deleted): its pods are left to Kubernetes' pod garbage collector"
			continue
		fi
		cat "$lost.err" >&2
		die "cannot get node $node (the ServiceAccount needs get on nodes, a ClusterRole)"
	fi
	IFS='|' read -r arch ready since reason <<LINE
$line
LINE
	if [ "$ready" != Unknown ] || [ -z "$since" ]; then continue; fi
	gone=$((now - $(epoch "$since")))
	if [ "$gone" -lt "$AFTER" ]; then
		echo "node $node ($arch) is Ready=Unknown since $since, ${gone}s: its pods are failed at ${AFTER}s"
		continue
	fi
	printf '%s|%s|%s|%s|%s\n' "$node" "${arch:-unknown}" "$since" "$gone" "${reason:-}" >>"$lost"
done

failed=0
while IFS='|' read -r pod node taskrun; do
	[ -n "$node" ] || continue
	arch='' since='' gone='' reason=''
	while IFS='|' read -r n a s g r; do
		[ "$n" != "$node" ] || { arch=$a since=$s gone=$g reason=$r; }
	done <"$lost"
	[ -n "$since" ] || continue
	# Node names, architecture labels, times and reasons hold no character
	# that JSON would need escaped.
	msg="node $node ($arch) was lost: Ready=Unknown${reason:+ ($reason)} since $since, ${gone}s; the pod was failed so that TaskRun $taskrun ends, and is retried on a node of $arch if it has retries left"
	kubectl patch pod -n "$NAMESPACE" "$pod" --subresource=status --type=merge \
		-p "{\"status\":{\"phase\":\"Failed\",\"reason\":\"NodeLost\",\"message\":\"$msg\"}}" >/dev/null ||
		die "cannot fail pod $pod (the ServiceAccount needs get and patch on pods/status in $NAMESPACE)"
	echo "failed pod $pod: $msg"
	failed=$((failed + 1))
done <<PODS
$pods
PODS
echo "failed $failed pod(s) on $(wc -l <"$lost" | tr -d ' ') lost node(s)"
