package tasks

import (
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/scripts"
)

// Every step of the catalog's Tasks runs its script as its command, so that
// Tekton adds no place-scripts init container, and StepScript reads each
// back.
func TestStepsRunScriptsAsCommands(t *testing.T) {
	cfg := config.Default()
	for _, task := range []*v1.Task{GitSync(cfg), Build(cfg), Manifest(cfg)} {
		for _, s := range task.Spec.Steps {
			if s.Script != "" {
				t.Errorf("Task %s step %s uses Tekton's script field, which costs the pod a place-scripts init container", task.Name, s.Name)
			}
			script, ok := StepScript(s)
			if !ok || script == "" {
				t.Errorf("Task %s step %s: StepScript found no script in command %.60q", task.Name, s.Name, s.Command)
				continue
			}
			if s.Command[0] != "/bin/sh" && s.Command[0] != "/busybox/sh" {
				t.Errorf("Task %s step %s runs %s", task.Name, s.Name, s.Command[0])
			}
		}
	}
}

func TestStepScript(t *testing.T) {
	script := "#!/bin/sh\necho hi\n"
	for _, tc := range []struct {
		name string
		step v1.Step
		want string
		ok   bool
	}{
		{"command", v1.Step{Name: "a", Command: scriptCommand("a", script)}, script, true},
		{"script field", v1.Step{Name: "a", Script: script}, script, true},
		{"other step name", v1.Step{Name: "b", Command: scriptCommand("a", script)}, "", false},
		{"other shell", v1.Step{Name: "a", Command: []string{"/bin/bash", "-c", script, "a"}}, "", false},
		{"a binary", v1.Step{Name: "a", Command: []string{"/ko-app/crane", "version"}}, "", false},
		{"script and command", v1.Step{Name: "a", Script: script, Command: []string{"x"}}, script, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := StepScript(tc.step)
			if got != tc.want || ok != tc.ok {
				t.Errorf("StepScript = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestShebang(t *testing.T) {
	if got := shebang("#!/busybox/sh\nx\n"); got != "/busybox/sh" {
		t.Errorf("shebang = %q", got)
	}
	for _, bad := range []string{"echo hi\n", "#!/bin/sh -e\n", "#!\n", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("shebang(%q) did not panic", bad)
				}
			}()
			shebang(bad)
		}()
	}
}

// The kubelet must hand the shell each script as written: unescapeKube,
// the kubelet's expansion, undoes escapeKube on every step script and on
// what the kubelet reads in its own way.
func TestEscapeKube(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"echo $x ${y} \"$@\"", "echo $x ${y} \"$@\""},
		{"list=index-$$", "list=index-$$$$"},
		{"d=$(mktemp -d)", "d=$(mktemp -d)"},
		{"why=$(overlay_unsafe)", "why=$$(overlay_unsafe)"},
		{"$(PLATFORM) $(a.b-c_d)", "$$(PLATFORM) $$(a.b-c_d)"},
		{"x=$(echo $$)", "x=$(echo $$)"},
		{"x=$(echo \"$(id)\")", "x=$(echo \"$(id)\")"},
		{"x=$$(y)", "x=$$$$(y)"},
		{"open $( and never closed $$", "open $( and never closed $$$$"},
		{"trailing $", "trailing $"},
	} {
		if got := escapeKube(tc.in); got != tc.want {
			t.Errorf("escapeKube(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := unescapeKube(escapeKube(tc.in)); got != tc.in {
			t.Errorf("unescapeKube(escapeKube(%q)) = %q", tc.in, got)
		}
	}
	cfg := config.Default()
	for _, task := range []*v1.Task{GitSync(cfg), Build(cfg), Manifest(cfg)} {
		for _, s := range task.Spec.Steps {
			if len(s.Command) < 3 {
				continue
			}
			if got := unescapeKube(s.Command[2]); got != scriptOf(t, task.Name, s.Name) {
				t.Errorf("Task %s step %s: the kubelet would not give the shell the script as written", task.Name, s.Name)
			}
		}
	}
}

func scriptOf(t *testing.T, task, step string) string {
	t.Helper()
	s, ok := map[string]string{
		CloneStep: scripts.Clone, BuildStep: scripts.Build, ManifestStep: scripts.Manifest,
		SBOMStep: scripts.SBOM, SBOMAttachStep: scripts.SBOMAttach, SBOMIndexStep: scripts.SBOMIndex,
	}[step]
	if !ok {
		t.Fatalf("Task %s step %s: which script it runs is not known to this test", task, step)
	}
	return s
}
