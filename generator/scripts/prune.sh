#!/bin/sh
# Delete the finished runs of this catalog's Pipelines beyond the last
# KEEP_SUCCEEDED that succeeded and the last KEEP_FAILED that failed (or were
# cancelled), counted apart for each Pipeline and, within it, for each pull
# request and for branch and tag builds together. Runs still going are never
# touched. Inputs, from the environment:
#
#   NAMESPACE        the build namespace
#   PIPELINES        the Pipelines whose runs are pruned, space-separated
#                    (the tekton.dev/pipeline label Tekton puts on a run)
#   KEEP_SUCCEEDED   how many succeeded runs to keep per Pipeline and pull request
#   KEEP_FAILED      how many failed or cancelled runs to keep likewise
#
# Needs kubectl with list and delete on pipelineruns in NAMESPACE (in a pod,
# its ServiceAccount's; here, any kubeconfig kubectl finds), sort and grep.
# Deleting a run deletes its TaskRuns and pods (owner references).
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

[ -n "${NAMESPACE:-}" ] || die "NAMESPACE is empty: the namespace of the runs to prune"
[ -n "${PIPELINES:-}" ] || die "PIPELINES is empty: the Pipelines whose runs to prune"
for n in "${KEEP_SUCCEEDED:-}" "${KEEP_FAILED:-}"; do
	case $n in
	'' | *[!0-9]*) die "KEEP_SUCCEEDED and KEEP_FAILED must be whole numbers, not '$n'" ;;
	esac
done

selector="tekton.dev/pipeline in ($(echo "$PIPELINES" | tr -s ' ' ','))"
# One line per run, newest first: completionTime|name|pipeline|pull request|Succeeded status.
runs=$(kubectl get pipelineruns -n "$NAMESPACE" -l "$selector" \
	-o jsonpath='{range .items[*]}{.status.completionTime}{"|"}{.metadata.name}{"|"}{.metadata.labels.tekton\.dev/pipeline}{"|"}{.metadata.labels.tekton-multiarch\.dev/pull-request}{"|"}{.status.conditions[?(@.type=="Succeeded")].status}{"\n"}{end}' |
	sort -r) || die "cannot list the runs in $NAMESPACE (the ServiceAccount needs list on pipelineruns there)"

seen=$(mktemp)
trap 'rm -f "$seen"' EXIT
deleted=0
kept=0
while IFS='|' read -r completed name pipeline pr status; do
	[ -n "$name" ] || continue
	case $status in
	True) kind=succeeded keep=$KEEP_SUCCEEDED ;;
	False) kind=failed keep=$KEEP_FAILED ;;
	*) continue ;; # still going
	esac
	[ -n "$completed" ] || continue
	group="$pipeline ${pr:+pull request #$pr}"
	[ -n "$pr" ] || group="$pipeline branch and tag builds"
	key="$group|$kind"
	n=$(grep -c -F -x -- "$key" "$seen" || true)
	printf '%s\n' "$key" >>"$seen"
	if [ "$n" -lt "$keep" ]; then
		kept=$((kept + 1))
		continue
	fi
	kubectl delete pipelinerun -n "$NAMESPACE" "$name" --wait=false >/dev/null ||
		die "cannot delete $name (the ServiceAccount needs delete on pipelineruns in $NAMESPACE)"
	echo "deleted $name ($kind $completed; $group keeps its last $keep $kind)"
	deleted=$((deleted + 1))
done <<RUNS
$runs
RUNS
echo "pruned $deleted finished run(s) in $NAMESPACE, kept $kept (per Pipeline and pull request: $KEEP_SUCCEEDED succeeded, $KEEP_FAILED failed)"
