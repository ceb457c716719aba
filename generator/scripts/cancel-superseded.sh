#!/bin/sh
# Cancel the runs of a pull request that an event superseded: when it gets
# new commits, every run of it that builds another commit; when it is closed
# or merged, every run of it. Only runs still going are touched, and only
# pull-request runs (the tekton-multiarch.dev/pull-request label): branch and
# tag builds carry no such label and are never cancelled. Inputs, from the
# environment:
#
#   NAMESPACE      the build namespace, where the runs are
#   REPOSITORY     the repository the pull request is for, as the runs'
#                  tekton-multiarch.dev/repository annotation has it
#   PULL_REQUEST   its number (GitLab: the merge request's iid), as the runs'
#                  tekton-multiarch.dev/pull-request label has it
#   KEEP_COMMIT    the pull request's new head commit, whose runs stay;
#                  empty when it was closed or merged: every run goes
#
# Needs kubectl with list and patch on pipelineruns in NAMESPACE (in a pod,
# its ServiceAccount's; here, any kubeconfig kubectl finds).
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

[ -n "${NAMESPACE:-}" ] || die "NAMESPACE is empty: the namespace of the pull request's runs"
[ -n "${REPOSITORY:-}" ] || die "REPOSITORY is empty: the repository the pull request is for"
case ${PULL_REQUEST:-} in
'' | *[!0-9]*) die "PULL_REQUEST must be the pull request's number, not '${PULL_REQUEST:-}'" ;;
esac
KEEP_COMMIT=${KEEP_COMMIT:-}
case $KEEP_COMMIT in
'') why="pull request #$PULL_REQUEST of $REPOSITORY was closed or merged" ;;
*[!0-9a-f]*) die "KEEP_COMMIT must be a commit's hex SHA or empty, not '$KEEP_COMMIT'" ;;
*) why="pull request #$PULL_REQUEST of $REPOSITORY is at $KEEP_COMMIT now" ;;
esac

# One line per run: name|repository|commit|spec.status|Succeeded status.
# '|' and not a tab: read would merge empty fields between tabs.
runs=$(kubectl get pipelineruns -n "$NAMESPACE" -l "tekton-multiarch.dev/pull-request=$PULL_REQUEST" \
	-o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.metadata.annotations.tekton-multiarch\.dev/repository}{"|"}{.metadata.labels.tekton-multiarch\.dev/commit}{"|"}{.spec.status}{"|"}{.status.conditions[?(@.type=="Succeeded")].status}{"\n"}{end}') ||
	die "cannot list the runs of pull request #$PULL_REQUEST in $NAMESPACE (the ServiceAccount needs list on pipelineruns there)"

cancelled=0
kept=0
while IFS='|' read -r name repo commit spec_status done_status; do
	[ -n "$name" ] || continue
	[ "$repo" = "$REPOSITORY" ] || continue
	case $done_status in
	True | False) continue ;;
	esac
	case $spec_status in
	Cancelled | CancelledRunFinally | StoppedRunFinally) continue ;;
	esac
	if [ -n "$KEEP_COMMIT" ] && [ "$commit" = "$KEEP_COMMIT" ]; then
		kept=$((kept + 1))
		continue
	fi
	kubectl patch pipelinerun -n "$NAMESPACE" "$name" --type merge -p '{"spec":{"status":"Cancelled"}}' >/dev/null ||
		die "cannot cancel $name (the ServiceAccount needs patch on pipelineruns in $NAMESPACE)"
	echo "cancelled $name (commit ${commit:-unknown}): $why"
	cancelled=$((cancelled + 1))
done <<RUNS
$runs
RUNS
echo "$why: cancelled $cancelled run(s) in progress, kept $kept of the new head"
