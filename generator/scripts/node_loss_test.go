package scripts

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeKubectl answers node-loss.sh's three kubectl calls from files, as the
// API server would through those jsonpaths, and records each patch.
const fakeKubectl = `#!/bin/sh
case "$*" in
"get pods "*) cat "$FAKE/pods" ;;
"get node secret "*) echo 'Error from server (Forbidden): nodes "secret" is forbidden' >&2; exit 1 ;;
"get node "*) n=$3; [ -e "$FAKE/node-$n" ] || { echo "Error from server (NotFound): nodes \"$n\" not found" >&2; exit 1; }; cat "$FAKE/node-$n" ;;
"patch pod "*) echo "$*" >>"$FAKE/patches" ;;
*) echo "fake kubectl: unexpected $*" >&2; exit 2 ;;
esac
`

// TestNodeLoss runs node-loss.sh alone, against a fake kubectl: which pods
// it fails, with which message, and which it leaves. The cluster test runs it
// against the real API server, RBAC and admission policy.
func TestNodeLoss(t *testing.T) {
	now := time.Now().UTC()
	ago := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339) }
	nodes := map[string]string{
		"pi-1":  "arm64|Unknown|" + ago(5*time.Minute) + "|NodeStatusUnknown",  // lost
		"pi-2":  "arm64|Unknown|" + ago(20*time.Second) + "|NodeStatusUnknown", // not for long enough
		"x86-1": "amd64|True|" + ago(time.Hour) + "|KubeletReady",
		"x86-2": "amd64|False|" + ago(time.Hour) + "|KubeletNotReady", // its kubelet talks
	}
	pods := strings.Join([]string{
		"run-build-arm64-pod|pi-1|run-build-arm64",
		"run-clone-pod|pi-1|run-clone",
		"run2-build-arm64-pod|pi-2|run2-build-arm64",
		"run-build-amd64-pod|x86-1|run-build-amd64",
		"run3-build-amd64-pod|x86-2|run3-build-amd64",
		"run4-build-arm64-pod-retry1||run4-build-arm64", // not scheduled
	}, "\n")
	for _, tc := range []struct {
		name     string
		after    string
		pods     string
		wantFail []string // pods patched, in order
		wantOut  []string
		wantErr  string
	}{
		{name: "lost node", after: "120", pods: pods,
			wantFail: []string{"run-build-arm64-pod", "run-clone-pod"},
			wantOut: []string{
				"failed pod run-build-arm64-pod: node pi-1 (arm64) was lost: Ready=Unknown (NodeStatusUnknown) since " + ago(5*time.Minute) + ", 30",
				"node pi-2 (arm64) is Ready=Unknown since " + ago(20*time.Second),
				"failed 2 pod(s) on 1 lost node(s)",
			}},
		{name: "after longer than the loss", after: "600", pods: pods, wantOut: []string{"failed 0 pod(s) on 0 lost node(s)"}},
		{name: "no pods", after: "120", pods: "", wantOut: []string{"failed 0 pod(s) on 0 lost node(s)"}},
		{name: "bad after", after: "2m", pods: pods, wantErr: "AFTER must be a whole number of seconds, not '2m'"},
		{name: "node deleted", after: "120", pods: "p|gone|tr", wantOut: []string{"node gone is gone (deleted)", "failed 0 pod(s)"}},
		{name: "node forbidden", after: "120", pods: "p|secret|tr", wantErr: "cannot get node secret (the ServiceAccount needs get on nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fake := filepath.Join(dir, "fake")
			bin := filepath.Join(dir, "bin")
			for _, d := range []string{fake, bin} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			write(t, filepath.Join(bin, "kubectl"), fakeKubectl, 0o755)
			write(t, filepath.Join(fake, "pods"), tc.pods, 0o644)
			for n, line := range nodes {
				write(t, filepath.Join(fake, "node-"+n), line, 0o644)
			}
			cmd := exec.Command("sh", "-c", NodeLoss)
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE=" + fake,
				"NAMESPACE=builds", "PIPELINES=multiarch-build multiarch-build-matrix", "AFTER=" + tc.after}
			out, err := cmd.CombinedOutput()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(string(out), tc.wantErr) {
					t.Fatalf("err %v, output:\n%s\nwant a failure saying %q", err, out, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			patches, _ := os.ReadFile(filepath.Join(fake, "patches"))
			lines := strings.Split(strings.TrimSpace(string(patches)), "\n")
			if len(patches) == 0 {
				lines = nil
			}
			if len(lines) != len(tc.wantFail) {
				t.Fatalf("patched %d pods, want %v:\n%s", len(lines), tc.wantFail, patches)
			}
			for i, pod := range tc.wantFail {
				want := fmt.Sprintf(`patch pod -n builds %s --subresource=status --type=merge -p {"status":{"phase":"Failed","reason":"NodeLost","message":"node pi-1 (arm64) was lost`, pod)
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("patch %d: %s\nwant it to start %s", i, lines[i], want)
				}
				var body struct{ Status map[string]string }
				if _, js, _ := strings.Cut(lines[i], " -p "); json.Unmarshal([]byte(js), &body) != nil || body.Status["phase"] != "Failed" {
					t.Errorf("patch %d: not a JSON status patch to Failed: %s", i, lines[i])
				}
			}
		})
	}
}
