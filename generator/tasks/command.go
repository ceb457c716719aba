package tasks

import (
	"fmt"
	"regexp"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// The step scripts run as their step's command, `<shell> -c <script> <step
// name> <args>...`, with the shell their #! line names, and not as Tekton's
// script field. Tekton writes script fields to files in an init container
// of its own, place-scripts, and a pod's init containers run one after the
// other, each noticed by the kubelet only at its next relist (every second):
// on the real node place-scripts put 1.5 to 2 s before each build's and the
// manifest's first step (BenchmarkPhases, test/README.md). The script text
// is the same embedded file, verbatim, as the command's third word; the
// step's args follow the step name, which is the script's $0, as they follow
// a script file's path. One difference: the kubelet expands $(NAME) in a
// container's command from its env and turns $$ into $, where a script
// file is left alone, so the command escapes the two (escapeKube).

// scriptCommand is the command that runs script, which must start with a #!
// line naming its shell and no argument to it.
func scriptCommand(step, script string) []string {
	return []string{shebang(script), "-c", escapeKube(script), step}
}

// envName is how an env var may be named (Kubernetes' validation): only a
// $(...) holding such a name can be expanded.
var envName = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

// escapeKube escapes what the kubelet would expand in a container's
// command, so that the shell gets the script as written: $$ becomes $$$$,
// and $(NAME), where NAME could name an env var, $$(NAME).
func escapeKube(s string) string {
	return rewriteKube(s, "$$$$", func(ref, name string) string {
		if envName.MatchString(name) {
			return "$" + ref
		}
		return ref
	})
}

// unescapeKube is the kubelet's expansion of a command with no env var
// defined: $$ becomes $, $(...) stays.
func unescapeKube(s string) string {
	return rewriteKube(s, "$", func(ref, _ string) string { return ref })
}

// rewriteKube reads s as the kubelet's expansion of a container's command
// does (k8s.io/kubernetes third_party/forked/golang/expansion) and writes
// each $$ as dollar and each reference $(name) as ref gives it; the rest
// stays. A $( runs to the first ), $$ inside included; a $( that no )
// closes is text.
func rewriteKube(s, dollar string, ref func(ref, name string) string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteString(dollar)
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			b.WriteString(ref(s[i:i+3+end], s[i+2:i+2+end]))
			i += 2 + end
		default:
			b.WriteString(s[i : i+2])
			i++
		}
	}
	return b.String()
}

func shebang(script string) string {
	line, _, _ := strings.Cut(script, "\n")
	sh, ok := strings.CutPrefix(line, "#!")
	if !ok || sh == "" || strings.ContainsAny(sh, " \t") {
		// The embedded scripts are fixed at build time; a test runs every one.
		panic(fmt.Sprintf("step script starts with %q, not a #!<shell> line", line))
	}
	return sh
}

// StepScript is the script a step runs, as scriptCommand put it into its
// command, or as Tekton's script field holds it; ok is false for a step that
// runs neither way.
func StepScript(s v1.Step) (script string, ok bool) {
	if s.Script != "" {
		return s.Script, len(s.Command) == 0
	}
	c := s.Command
	if len(c) == 4 && c[1] == "-c" && strings.HasPrefix(c[2], "#!"+c[0]+"\n") && c[3] == s.Name {
		return unescapeKube(c[2]), true
	}
	return "", false
}
