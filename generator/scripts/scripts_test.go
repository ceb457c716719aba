package scripts

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shellcheck lints the very files the Tasks embed.
func TestShellcheck(t *testing.T) {
	path, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed: apt-get install -y shellcheck (.ci/run does)")
	}
	files, err := filepath.Glob("*.sh")
	if err != nil || len(files) == 0 {
		t.Fatalf("no step scripts here: %v", err)
	}
	out, err := exec.Command(path, append([]string{"--shell=sh", "--severity=style"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}

func TestScriptsTakeNoTektonVariables(t *testing.T) {
	for name, s := range map[string]string{"clone.sh": Clone, "build.sh": Build, "manifest.sh": Manifest, "load-node-profiles.sh": LoadNodeProfiles,
		"sbom.sh": SBOM, "sbom-index.sh": SBOMIndex, "sbom-attach.sh": SBOMAttach, "cancel-superseded.sh": CancelSuperseded, "prune.sh": Prune, "node-loss.sh": NodeLoss} {
		// The SBOM steps' debug images have busybox at /busybox and no /bin/sh.
		if !strings.HasPrefix(s, "#!/bin/sh\n") && !(strings.HasPrefix(name, "sbom") && strings.HasPrefix(s, "#!/busybox/sh\n")) {
			t.Errorf("%s: must start with #!/bin/sh (the images have no bash guarantee), or #!/busybox/sh for the SBOM steps", name)
		}
		for _, v := range []string{"$(params.", "$(workspaces.", "$(results.", "$(context.", "$(tasks."} {
			if strings.Contains(s, v) {
				t.Errorf("%s contains %s: pass it through env", name, v)
			}
		}
	}
}
