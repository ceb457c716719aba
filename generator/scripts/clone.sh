#!/bin/sh
# Clone one commit with git-sync v4 (one-time, depth 1) and record it as
# Tekton results. Every input comes from the environment: Tekton params are
# never interpolated into this script.
#
#   GIT_URL, GIT_REF         what to clone (branch, tag or full 40-hex SHA)
#   SOURCE_ROOT, SOURCE_LINK git-sync's --root and --link
#   GIT_CREDENTIALS_BOUND    "true" when the git-credentials workspace is bound
#   GIT_CREDENTIALS_PATH     its mount path: username + password, or
#                            ssh-privatekey + known_hosts
#   RESULT_COMMIT            file to write the full commit SHA to
#   RESULT_URL               file to write GIT_URL to, userinfo removed (optional)
#   RESULT_COMMIT_TIME       file to write the commit's committer time to, in
#                            seconds since the epoch (optional): the build's
#                            default SOURCE_DATE_EPOCH
#   GIT_SYNC                 git-sync binary (default /git-sync, the image's)
set -eu

die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

[ -n "${GIT_URL:-}" ] || die "GIT_URL is empty: set the GIT_URL param to the repository to clone"
[ -n "${GIT_REF:-}" ] || die "GIT_REF is empty: set the GIT_REF param to a branch, a tag or a full commit SHA"
: "${SOURCE_ROOT:?SOURCE_ROOT must name the clone root}"
: "${RESULT_COMMIT:?RESULT_COMMIT must name the COMMIT result file}"
link=${SOURCE_LINK:-checkout}
git_sync=${GIT_SYNC:-/git-sync}

set -- --repo="$GIT_URL" --ref="$GIT_REF" --root="$SOURCE_ROOT" --link="$link" --one-time --depth=1

if [ "${GIT_CREDENTIALS_BOUND:-false}" = true ]; then
	creds=${GIT_CREDENTIALS_PATH:?GIT_CREDENTIALS_PATH must be set when the workspace is bound}
	if [ -f "$creds/ssh-privatekey" ]; then
		# Never turn host key checking off: a missing known_hosts is an error.
		[ -f "$creds/known_hosts" ] || die "workspace git-credentials has ssh-privatekey but no known_hosts: add the server's host keys (ssh-keyscan HOST) as key known_hosts"
		set -- "$@" --ssh-key-file="$creds/ssh-privatekey" --ssh-known-hosts=true --ssh-known-hosts-file="$creds/known_hosts"
	elif [ -f "$creds/password" ]; then
		[ -f "$creds/username" ] || die "workspace git-credentials has password but no username: use a kubernetes.io/basic-auth Secret (keys username and password)"
		set -- "$@" --username="$(cat "$creds/username")" --password-file="$creds/password"
	else
		die "workspace git-credentials is bound but holds neither ssh-privatekey (+ known_hosts) nor username + password"
	fi
fi

# A user:token@ in the URL goes to git-sync only: never to the log or the
# results, which anyone who may read the TaskRun sees.
shown_url=$(printf '%s' "$GIT_URL" | sed 's#^\([A-Za-z][A-Za-z0-9+.-]*://\)[^/@]*@#\1#')
echo "cloning $shown_url at $GIT_REF (depth 1)"
if ! "$git_sync" "$@"; then
	# git-sync fetches a commit by SHA only when given all 40 hex digits. Say so
	# only after it failed: a tag such as 20240115 is hex too, and valid.
	if printf '%s' "$GIT_REF" | grep -Eq '^[0-9a-f]{7,39}$'; then
		die "git-sync could not clone $shown_url at $GIT_REF: if $GIT_REF is an abbreviated commit SHA, give all 40 characters (git-sync fetches a commit only by its full SHA); otherwise check that the branch or tag exists and the repository is reachable"
	fi
	die "git-sync could not clone $shown_url at $GIT_REF: check that the ref exists and the repository is reachable (and, if private, the git-credentials workspace)"
fi

# git-sync points the link at .worktrees/<full sha>; readlink instead of
# following it because fs.protected_symlinks can forbid that, even to root.
target=$(readlink "$SOURCE_ROOT/$link") || die "git-sync left no link $SOURCE_ROOT/$link"
commit=${target##*/}
printf '%s' "$commit" | grep -Eq '^[0-9a-f]{40}$' || die "git-sync link $SOURCE_ROOT/$link points at $target, not a commit worktree"

# The committer time, read from the root's repository, which holds the one
# commit git-sync fetched: no link to follow (fs.protected_symlinks), and the
# repository is this step's own user's (git-sync's 65533), so git's
# safe.directory check passes.
commit_time=
if [ -n "${RESULT_COMMIT_TIME:-}" ]; then
	commit_time=$(git -C "$SOURCE_ROOT" show -s --format=%ct "$commit") || die "cannot read the committer time of $commit with git"
	case "$commit_time" in
	'' | *[!0-9]*) die "git gave '$commit_time' as the committer time of $commit, not a number of seconds" ;;
	esac
	printf '%s' "$commit_time" >"$RESULT_COMMIT_TIME"
fi

printf '%s' "$commit" >"$RESULT_COMMIT"
if [ -n "${RESULT_URL:-}" ]; then
	printf '%s' "$shown_url" >"$RESULT_URL"
fi
echo "cloned commit $commit${commit_time:+, committed at $commit_time (seconds since the epoch)}"
