// Package gitsync is a stand-in for git-sync v4, which cannot be installed on
// these machines: the Go module proxy refuses its module and Debian has no
// package. Main parses its command line against git-sync v4's whole flag set
// (unknown flags, v3 flags, v4 flags it does not reproduce, a missing --one-time
// or --root all fail), then leaves git-sync's documented result on disk, made
// with plain git.
//
// The real-build test (test/realbuild) runs it as its test binary re-executed
// under the name git-sync; cmd/git-sync is the same as a program of its own, which
// test/cluster/build-images.sh puts at /git-sync in the cluster test's git-sync
// image.
package gitsync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

type flagKind int

const (
	flagString flagKind = iota
	flagBool
)

// v4Flags is git-sync v4's flag set (v4.4, `git-sync --help`). The
// stand-in parses the command line against all of it, so a flag git-sync does
// not know fails here as it would there ("unknown flag"), and a real v4 flag
// the stand-in cannot honour fails loudly instead of being ignored.
var v4Flags = map[string]flagKind{
	"repo": flagString, "ref": flagString, "root": flagString, "link": flagString,
	"period": flagString, "sync-timeout": flagString, "one-time": flagBool,
	"sync-on-signal": flagString, "max-failures": flagString, "touch-file": flagString,
	"add-user": flagBool, "group-write": flagBool, "stale-worktree-timeout": flagString,
	"depth": flagString, "submodules": flagString, "sparse-checkout-file": flagString,
	"exechook-command": flagString, "exechook-timeout": flagString, "exechook-backoff": flagString,
	"webhook-url": flagString, "webhook-method": flagString, "webhook-success-status": flagString,
	"webhook-timeout": flagString, "webhook-backoff": flagString,
	"username": flagString, "password": flagString, "password-file": flagString, "credential": flagString,
	"ssh-key-file": flagString, "ssh-known-hosts": flagBool, "ssh-known-hosts-file": flagString,
	"cookie-file": flagBool, "askpass-url": flagString,
	"git": flagString, "git-config": flagString, "git-gc": flagString,
	"http-bind": flagString, "http-metrics": flagBool, "http-pprof": flagBool,
	"verbose": flagString, "v": flagString, "version": flagBool, "help": flagBool, "h": flagBool, "man": flagBool,
}

// v3Flags still parse in v4 but are deprecated; a v4 Task must not use them.
var v3Flags = map[string]string{
	"branch": "--ref", "rev": "--ref", "dest": "--link", "wait": "--period",
	"timeout": "--sync-timeout", "max-sync-failures": "--max-failures",
	"change-permissions": "--group-write", "sync-hook-command": "--exechook-command", "ssh": "--ssh-key-file",
}

// implemented is what the stand-in reproduces; every other v4 flag is refused.
var implemented = map[string]bool{
	"repo": true, "ref": true, "root": true, "link": true, "one-time": true, "depth": true,
	"username": true, "password-file": true, "ssh-key-file": true, "ssh-known-hosts": true,
	"ssh-known-hosts-file": true, "verbose": true, "v": true,
}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

type options struct {
	repo, ref, root, link string
	oneTime               bool
	depth                 int
	username, passwdFile  string
	sshKeyFiles           []string
	sshKnownHosts         bool
	knownHostsFile        string
}

// parseArgs parses like git-sync's pflag set: --name=value or
// --name value for strings, --name or --name=true|false for booleans.
func parseArgs(args []string) (*options, error) {
	o := &options{ref: "HEAD", depth: 1, sshKnownHosts: true, knownHostsFile: "/etc/git-secret/known_hosts"}
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return nil, fmt.Errorf("unexpected argument %q: git-sync takes no positional arguments", a)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if repl, ok := v3Flags[name]; ok {
			return nil, fmt.Errorf("--%s is a deprecated git-sync v3 flag: use %s", name, repl)
		}
		kind, ok := v4Flags[name]
		if !ok {
			return nil, fmt.Errorf("unknown flag: --%s", name)
		}
		if !implemented[name] {
			return nil, fmt.Errorf("--%s is a git-sync v4 flag this stand-in does not implement: extend test/gitsync/gitsync.go", name)
		}
		switch kind {
		case flagBool:
			if !hasValue {
				value = "true"
			}
			if _, err := strconv.ParseBool(value); err != nil {
				return nil, fmt.Errorf("invalid argument %q for --%s: %v", value, name, err)
			}
		case flagString:
			if !hasValue {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("flag needs an argument: --%s", name)
				}
				i++
				value = args[i]
			}
		}
		if seen[name] && name != "ssh-key-file" {
			return nil, fmt.Errorf("--%s given twice", name)
		}
		seen[name] = true
		switch name {
		case "repo":
			o.repo = value
		case "ref":
			o.ref = value
		case "root":
			o.root = value
		case "link":
			o.link = value
		case "one-time":
			o.oneTime, _ = strconv.ParseBool(value)
		case "depth":
			d, err := strconv.Atoi(value)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("invalid argument %q for --depth: want a whole number", value)
			}
			o.depth = d
		case "username":
			o.username = value
		case "password-file":
			o.passwdFile = value
		case "ssh-key-file":
			o.sshKeyFiles = append(o.sshKeyFiles, value)
		case "ssh-known-hosts":
			o.sshKnownHosts, _ = strconv.ParseBool(value)
		case "ssh-known-hosts-file":
			o.knownHostsFile = value
		}
	}
	switch {
	case o.repo == "":
		return nil, errors.New("required flag: --repo")
	case o.root == "":
		return nil, errors.New("required flag: --root")
	case !filepath.IsAbs(o.root):
		return nil, fmt.Errorf("--root %q must be absolute", o.root)
	case !o.oneTime:
		// Without --one-time git-sync keeps syncing forever: the step would never end.
		return nil, errors.New("--one-time is required in a Task step: without it git-sync never exits")
	case o.username != "" && o.passwdFile == "":
		return nil, errors.New("--username requires --password or --password-file")
	case o.passwdFile != "" && o.username == "":
		return nil, errors.New("--password-file requires --username")
	}
	if o.passwdFile != "" {
		if _, err := os.Stat(o.passwdFile); err != nil {
			return nil, fmt.Errorf("--password-file: %v", err)
		}
	}
	for _, k := range o.sshKeyFiles {
		if _, err := os.Stat(k); err != nil {
			return nil, fmt.Errorf("--ssh-key-file: %v", err)
		}
	}
	if len(o.sshKeyFiles) > 0 && o.sshKnownHosts {
		if _, err := os.Stat(o.knownHostsFile); err != nil {
			return nil, fmt.Errorf("--ssh-known-hosts-file: %v", err)
		}
	}
	if o.link == "" {
		// git-sync v4's default link is the last element of the repo URL.
		o.link = strings.TrimSuffix(filepath.Base(strings.TrimSuffix(o.repo, "/")), ".git")
	}
	return o, nil
}

// Main stands in for git-sync v4 (which cannot be installed on these
// machines): it checks the command line against git-sync's flags and leaves
// what git-sync documents on disk, made with plain git: <root>/.git, a shallow
// worktree <root>/.worktrees/<full sha>, and the relative link
// <root>/<link> -> .worktrees/<sha>. Credentials are checked, not used. It
// returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if err := o.sync(stdout); err != nil {
		// git-sync's own wording for a one-time sync that fails.
		fmt.Fprintf(stderr, "E git-sync \"msg\"=\"too many failures, aborting\" \"error\"=%q \"repo\"=%q \"ref\"=%q\n", err.Error(), o.repo, o.ref)
		return 1
	}
	return 0
}

func (o *options) git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// remoteHash resolves ref the way git-sync v4 does: a branch or tag through
// ls-remote (an annotated tag to its commit), else a full SHA as itself.
func (o *options) remoteHash() (string, error) {
	out, err := o.git(o.root, "ls-remote", "--", o.repo, o.ref, o.ref+"^{}")
	if err != nil {
		return "", err
	}
	byName := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if sha, name, ok := strings.Cut(line, "\t"); ok {
			byName[name] = sha
		}
	}
	for _, name := range []string{"refs/tags/" + o.ref + "^{}", "refs/tags/" + o.ref, "refs/heads/" + o.ref, o.ref} {
		if sha, ok := byName[name]; ok {
			return sha, nil
		}
	}
	if fullSHA.MatchString(o.ref) {
		return o.ref, nil
	}
	return "", fmt.Errorf("remote ref %q not found in %s", o.ref, o.repo)
}

func (o *options) sync(stdout io.Writer) error {
	if err := os.MkdirAll(o.root, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(o.root, ".git")); err != nil {
		if _, err := o.git(o.root, "init", "-q", "."); err != nil {
			return err
		}
	}
	hash, err := o.remoteHash()
	if err != nil {
		return err
	}
	fetch := []string{"fetch", "--no-progress", "--no-auto-gc"}
	if o.depth > 0 {
		fetch = append(fetch, "--depth="+strconv.Itoa(o.depth))
	}
	if _, err := o.git(o.root, append(fetch, o.repo, hash)...); err != nil {
		return err
	}
	got, err := o.git(o.root, "rev-parse", "FETCH_HEAD^{commit}")
	if err != nil {
		return err
	}
	if got != hash {
		return fmt.Errorf("fetched %s, wanted %s", got, hash)
	}
	rel := filepath.Join(".worktrees", hash)
	if _, err := os.Stat(filepath.Join(o.root, rel)); err != nil {
		if _, err := o.git(o.root, "worktree", "add", "-q", "--force", "--detach", rel, hash); err != nil {
			return err
		}
	}
	link := o.link
	if !filepath.IsAbs(link) {
		link = filepath.Join(o.root, link)
	}
	target, err := filepath.Rel(filepath.Dir(link), filepath.Join(o.root, rel))
	if err != nil {
		return err
	}
	// Swap the link atomically, as git-sync does.
	tmp := link + ".tmp-link"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "I git-sync \"msg\"=\"updated successfully\" \"ref\"=%q \"remote\"=%q (stand-in)\n", o.ref, hash)
	return nil
}
