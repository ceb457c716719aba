package realbuild

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tekton-multiarch/tekton-multiarch/test/gitsync"
)

// GitSyncName is the name the test binary answers to as the git-sync stand-in:
// TestMain dispatches to GitSyncMain when os.Args[0] ends in it.
const GitSyncName = "git-sync"

// GitSyncArgsFile is written next to the stand-in's argv[0] with the argument
// list it was given, one per line, so a test can check what the step passed.
const GitSyncArgsFile = "git-sync.args"

// GitSyncMain records the command line next to argv0 (GitSyncArgsFile), then
// runs the git-sync v4 stand-in of test/gitsync, which checks it against
// git-sync's flags and leaves git-sync's documented result on disk, made with
// plain git. Credentials are checked, not used: the test's git daemon serves
// anonymously.
func GitSyncMain(argv0 string, args []string, stdout, stderr io.Writer) int {
	_ = os.WriteFile(filepath.Join(filepath.Dir(argv0), GitSyncArgsFile), []byte(strings.Join(args, "\n")+"\n"), 0o644)
	return gitsync.Main(args, stdout, stderr)
}
