// Package realbuild runs the generated catalog on this machine, without a
// cluster: each TaskRun's step scripts run exactly as they stand in the
// generated YAML, after Tekton's own variable substitution, with the pod's
// volumes, workspaces and result files mapped to per-TaskRun directories, and
// a PipelineRun schedules its TaskRuns with Tekton's own DAG and result
// resolution. It is a test tool, not a product: see test/README.md.
package realbuild

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	prres "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/result"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
	"github.com/tekton-multiarch/tekton-multiarch/generator/validate"
)

// Catalog is one generated catalog tree's Tasks and Pipelines, strictly
// decoded into Tekton's v1 types and passed through Tekton's validation.
type Catalog struct {
	Dir       string
	Tasks     map[string]*v1.Task
	Pipelines map[string]*v1.Pipeline
}

// LoadCatalog reads <dir>/tasks/*/*/*.yaml and <dir>/pipelines/*/*/*.yaml
// (the catalog layout; samples/ sit one level deeper and are left out).
func LoadCatalog(dir string) (*Catalog, error) {
	c := &Catalog{Dir: dir, Tasks: map[string]*v1.Task{}, Pipelines: map[string]*v1.Pipeline{}}
	var files []string
	for _, pattern := range []string{"tasks/*/*/*.yaml", "pipelines/*/*/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no catalog files under %s", dir)
	}
	var all validate.Objects
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := validate.Decode(f, data)
		if err != nil {
			return nil, err
		}
		all.Add(objs)
	}
	if err := validate.Check(all); err != nil {
		return nil, err
	}
	for _, t := range all.Tasks {
		c.Tasks[t.Name] = t
	}
	for _, p := range all.Pipelines {
		c.Pipelines[p.Name] = p
	}
	return c, nil
}

// Runner runs TaskRuns and PipelineRuns of a Catalog on this machine.
type Runner struct {
	Catalog *Catalog
	// WorkDir holds one directory per TaskRun: its volumes, results, scripts.
	WorkDir string
	// GitSync is the binary that answers as git-sync when invoked under that
	// name (the test binary: see GitSyncMain).
	GitSync string
	// Timeout bounds each TaskRun, as a Task's timeout would.
	Timeout time.Duration
	// Out, when set, receives every step's output live, line-prefixed.
	Out io.Writer
	// Confine, when set, runs the steps confined as a pod's containers may
	// be (no /dev/fuse, the kernel's overlay refused, no CAP_SYS_ADMIN),
	// through the test binary as ConfineMain, in a mount namespace of their
	// own.
	Confine *Confinement
	// Container, when set, runs the buildah steps in real containers (the
	// clone step stays a process: its image is git-sync's).
	Container *StepContainer
	// StepBin puts a directory before PATH in the steps it names: another
	// buildah than the host's for one step (the image's v1.40.1 for the
	// manifest, whose index annotations the host's 1.28 cannot write).
	StepBin map[string]string
}

// TaskRunRequest is what a TaskRun object would say.
type TaskRunRequest struct {
	Name   string
	Task   string
	Params v1.Params
	// Workspaces binds workspace names to host directories.
	Workspaces map[string]string
}

// StepRun is how one step ended.
type StepRun struct {
	Name     string
	ExitCode int
	Duration time.Duration
}

// TaskRun is a finished TaskRun.
type TaskRun struct {
	Object      *v1.TaskRun  // with status: Succeeded condition and results
	Spec        *v1.TaskSpec // after substitution and workspace mounting
	Dir         string
	Log         string // every step's output, in order
	Steps       []StepRun
	GitSyncArgs []string // what a step passed to git-sync, if one ran it
	Err         error
	Started     time.Time
	Finished    time.Time
}

// Succeeded says whether the TaskRun's Succeeded condition is true.
func (r *TaskRun) Succeeded() bool { return r.Object.IsSuccessful() }

// Duration is the TaskRun's wall time.
func (r *TaskRun) Duration() time.Duration { return r.Finished.Sub(r.Started) }

// Result returns a string result's value.
func (r *TaskRun) Result(name string) (string, bool) {
	for _, res := range r.Object.Status.Results {
		if res.Name == name {
			return res.Value.StringVal, true
		}
	}
	return "", false
}

// StepNames lists the steps that ran.
func (r *TaskRun) StepNames() []string {
	var n []string
	for _, s := range r.Steps {
		n = append(n, s.Name)
	}
	return n
}

const (
	resultsDir      = "/tekton/results"
	containersMount = "/var/lib/containers"
	stepPath        = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// tektonVar matches a Tekton variable left in a step after substitution:
// Tekton would pass it through literally, which is always a wiring bug here.
var tektonVar = regexp.MustCompile(`\$\((params|results|workspaces|context|tasks|steps|step|artifacts)\.`)

func newUID() types.UID {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return types.UID(hex.EncodeToString(b))
}

// RunTask runs one TaskRun: Tekton's validation and substitution on the
// Task's spec, then each step's script with /bin/sh; the first failing step
// fails the TaskRun and the rest do not run, as with Tekton's default onError.
func (r *Runner) RunTask(ctx context.Context, req TaskRunRequest) *TaskRun {
	out := &TaskRun{Started: time.Now()}
	defer func() { out.Finished = time.Now() }()
	tr := &v1.TaskRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "TaskRun"},
		ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: "default", UID: newUID()},
		Spec:       v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: req.Task, Kind: v1.NamespacedTaskKind}, Params: req.Params},
	}
	var wsNames []string
	for n := range req.Workspaces {
		wsNames = append(wsNames, n)
	}
	sort.Strings(wsNames)
	for _, n := range wsNames {
		tr.Spec.Workspaces = append(tr.Spec.Workspaces, v1.WorkspaceBinding{Name: n, EmptyDir: &corev1.EmptyDirVolumeSource{}})
	}
	out.Object = tr
	fail := func(format string, a ...any) *TaskRun {
		out.Err = fmt.Errorf(format, a...)
		tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: v1.TaskRunReasonFailed.String(), Message: out.Err.Error()})
		return out
	}

	task, ok := r.Catalog.Tasks[req.Task]
	if !ok {
		return fail("task %q is not in the catalog %s", req.Task, r.Catalog.Dir)
	}
	vctx := validate.Context()
	tr.SetDefaults(vctx)
	if fe := tr.Validate(vctx); fe != nil {
		return fail("TaskRun %s is invalid: %v", tr.Name, fe)
	}
	t := task.DeepCopy()
	t.SetDefaults(vctx)
	rt := &resources.ResolvedTask{TaskName: t.Name, Kind: v1.NamespacedTaskKind, TaskSpec: &t.Spec}
	if err := taskrun.ValidateResolvedTask(vctx, tr.Spec.Params, nil, rt); err != nil {
		return fail("%v", err)
	}
	if err := resources.ValidateParamArrayIndex(&t.Spec, tr.Spec.Params); err != nil {
		return fail("%v", err)
	}

	// The taskrun reconciler's order (applyParamsContextsResultsAndWorkspaces),
	// then the workspace mounts its pod builder adds.
	ts := t.Spec.DeepCopy()
	ts = resources.ApplyParameters(ts, tr, ts.Params...)
	ts = resources.ApplyContexts(ts, t.Name, tr)
	ts = resources.ApplyResults(ts)
	ts = resources.ApplyArtifacts(ts)
	ts = resources.ApplyStepExitCodePath(ts)
	wsVolumes := workspace.CreateVolumes(tr.Spec.Workspaces)
	ts = resources.ApplyWorkspaces(vctx, ts, ts.Workspaces, tr.Spec.Workspaces, wsVolumes)
	ts, err := workspace.Apply(vctx, *ts, tr.Spec.Workspaces, wsVolumes)
	if err != nil {
		return fail("%v", err)
	}
	// The pod builder merges the step template, which carries the workspace mounts.
	if ts.Steps, err = v1.MergeStepsWithStepTemplate(ts.StepTemplate, ts.Steps); err != nil {
		return fail("%v", err)
	}
	out.Spec = ts
	if len(ts.Sidecars) > 0 {
		return fail("task %s has sidecars, which this harness does not run", t.Name)
	}

	dir, err := os.MkdirTemp(r.WorkDir, req.Name+"-")
	if err != nil {
		return fail("%v", err)
	}
	out.Dir = dir
	volumeDirs := map[string]string{} // pod volume name -> host dir
	for _, v := range ts.Volumes {
		volumeDirs[v.Name] = filepath.Join(dir, "volumes", v.Name)
	}
	for ws, v := range wsVolumes {
		volumeDirs[v.Name] = req.Workspaces[ws]
	}
	for _, d := range []string{"results", "scripts", "bin", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fail("%v", err)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	var log lockedBuffer
	for i := range ts.Steps {
		step := &ts.Steps[i]
		start := time.Now()
		code, err := r.runStep(ctx, out, dir, i, step, ts, volumeDirs, &log)
		out.Steps = append(out.Steps, StepRun{Name: step.Name, ExitCode: code, Duration: time.Since(start)})
		out.Log = log.String()
		if args, rerr := os.ReadFile(filepath.Join(dir, "bin", GitSyncArgsFile)); rerr == nil && out.GitSyncArgs == nil {
			out.GitSyncArgs = strings.Split(strings.TrimSuffix(string(args), "\n"), "\n")
		}
		if err != nil {
			return fail("%v", err)
		}
	}

	for _, rs := range ts.Results {
		if rs.Type != "" && rs.Type != v1.ResultsTypeString {
			return fail("result %s is of type %s: the harness reads string results only", rs.Name, rs.Type)
		}
		b, err := os.ReadFile(filepath.Join(dir, "results", rs.Name))
		if err != nil {
			continue // Tekton leaves an unwritten result out; its consumers fail.
		}
		tr.Status.Results = append(tr.Status.Results, v1.TaskRunResult{Name: rs.Name, Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(string(b))})
	}
	// Results travel in the container's termination message, which has a size limit.
	var msg []result.RunResult
	for _, res := range tr.Status.Results {
		msg = append(msg, result.RunResult{Key: res.Name, Value: res.Value.StringVal, ResultType: result.TaskRunResultType})
	}
	if b, _ := json.Marshal(msg); len(b) > config.DefaultMaxResultSize {
		return fail("results take %d bytes, more than Tekton's %d", len(b), config.DefaultMaxResultSize)
	}
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue, Reason: v1.TaskRunReasonSuccessful.String()})
	return out
}

type mount struct{ path, host string }

// hostPath maps a path inside the step's container to this machine through
// the longest mount that holds it.
func hostPath(mounts []mount, p string) (string, bool) {
	best := -1
	for i, m := range mounts {
		if (p == m.path || strings.HasPrefix(p, m.path+"/")) && (best < 0 || len(m.path) > len(mounts[best].path)) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return mounts[best].host + strings.TrimPrefix(p, mounts[best].path), true
}

func (r *Runner) runStep(ctx context.Context, out *TaskRun, dir string, i int, step *v1.Step, ts *v1.TaskSpec, volumeDirs map[string]string, log *lockedBuffer) (int, error) {
	// The pod runs it as `<shell> -c <script> <step name> <args>`; here it
	// runs from a file, as `/bin/sh <file> <args>`: no script reads its $0.
	stepScript, ok := tasks.StepScript(*step)
	if !ok {
		return -1, fmt.Errorf("step %s runs no step script: this harness runs step scripts only", step.Name)
	}
	// #!/busybox/sh: the SBOM steps' debug images have busybox there and no
	// /bin/sh; the scripts are POSIX sh either way.
	if !strings.HasPrefix(stepScript, "#!/bin/sh\n") && !strings.HasPrefix(stepScript, "#!/busybox/sh\n") {
		return -1, fmt.Errorf("step %s's script does not start with #!/bin/sh or #!/busybox/sh: this harness runs it with /bin/sh", step.Name)
	}
	if len(step.EnvFrom) > 0 {
		return -1, fmt.Errorf("step %s uses envFrom, which this harness does not map", step.Name)
	}
	var leftovers []string
	check := func(where, s string) {
		if tektonVar.MatchString(s) {
			leftovers = append(leftovers, where+": "+s)
		}
	}
	check("script", stepScript)
	for _, a := range step.Args {
		check("args", a)
	}
	for _, e := range step.Env {
		check("env "+e.Name, e.Value)
	}
	if len(leftovers) > 0 {
		return -1, fmt.Errorf("step %s has unresolved Tekton variables: %s", step.Name, strings.Join(leftovers, "; "))
	}

	stepDir := filepath.Join(dir, "steps", step.Name)
	mounts := []mount{{resultsDir, filepath.Join(dir, "results")}}
	for _, vm := range step.VolumeMounts {
		host, ok := volumeDirs[vm.Name]
		if !ok {
			return -1, fmt.Errorf("step %s mounts volume %s, which is neither an emptyDir of the Task nor a bound workspace", step.Name, vm.Name)
		}
		if vm.SubPath != "" {
			host = filepath.Join(host, vm.SubPath)
		}
		mounts = append(mounts, mount{filepath.Clean(vm.MountPath), host})
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.host, 0o755); err != nil {
			return -1, err
		}
	}
	for _, d := range []string{"tmp", "cwd", "run"} {
		if err := os.MkdirAll(filepath.Join(stepDir, d), 0o755); err != nil {
			return -1, err
		}
	}
	if r.Container != nil && strings.Contains(step.Image, "/buildah/") {
		return r.runInContainer(ctx, out, dir, i, step, stepScript, mounts, log)
	}

	// A pod's containers start from an image's environment, not the test's.
	path := stepPath
	if bin := r.StepBin[step.Name]; bin != "" {
		path = bin + ":" + path
	}
	env := []string{"PATH=" + path, "HOME=" + filepath.Join(dir, "home"), "TMPDIR=" + filepath.Join(stepDir, "tmp")}
	if strings.Contains(step.Image, "/git-sync/git-sync:") {
		// The git-sync image's /git-sync, through the variable the script reads.
		link := filepath.Join(dir, "bin", GitSyncName)
		if err := os.Symlink(r.GitSync, link); err != nil && !errors.Is(err, os.ErrExist) {
			return -1, err
		}
		env = append(env, "GIT_SYNC="+link)
	}
	if root, ok := hostPath(mounts, containersMount+"/storage"); ok {
		// buildah's default storage is under the containers volume; its runroot is
		// container-local. Separate TaskRuns thus never share storage, as pods would not.
		env = append(env, "CONTAINERS_ROOT="+root, "CONTAINERS_RUNROOT="+filepath.Join(stepDir, "run", "containers"))
	}
	for _, e := range step.Env {
		if e.ValueFrom != nil {
			return -1, fmt.Errorf("step %s env %s uses valueFrom, which this harness does not map", step.Name, e.Name)
		}
		v := e.Value
		if filepath.IsAbs(v) {
			h, ok := hostPath(mounts, filepath.Clean(v))
			if ok {
				v = h
			} else if strings.HasPrefix(v, "/workspace/") || strings.HasPrefix(v, "/tekton/") {
				// Tekton's own directories exist only in the pod: writing there
				// here would write to this machine's root.
				return -1, fmt.Errorf("step %s env %s=%s is on no mount of the step", step.Name, e.Name, v)
			}
		}
		env = append(env, e.Name+"="+v)
	}

	script := filepath.Join(dir, "scripts", fmt.Sprintf("script-%d-%s", i, step.Name))
	if err := os.WriteFile(script, []byte(stepScript), 0o755); err != nil {
		return -1, err
	}
	cwd := filepath.Join(stepDir, "cwd")
	if step.WorkingDir != "" {
		h, ok := hostPath(mounts, step.WorkingDir)
		if !ok {
			return -1, fmt.Errorf("step %s workingDir %s is on no mount", step.Name, step.WorkingDir)
		}
		cwd = h
	}

	var w io.Writer = log
	if r.Out != nil {
		w = io.MultiWriter(log, &prefixWriter{w: r.Out, prefix: fmt.Sprintf("[%s/%s] ", out.Object.Name, step.Name)})
	}
	fmt.Fprintf(log, "--- step %s\n", step.Name)
	argv := append([]string{"/bin/sh", script}, step.Args...)
	// Its own process group, so a timeout ends everything the step started,
	// as a container's end would; Pdeathsig covers a test binary that dies.
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if r.Confine != nil {
		link := filepath.Join(dir, "bin", ConfineName)
		if err := os.Symlink(r.GitSync, link); err != nil && !errors.Is(err, os.ErrExist) {
			return -1, err
		}
		argv = append(append(append([]string{link}, r.Confine.flags()...), "--"), argv...)
		// A private mount namespace (Go makes / rprivate in it): what the
		// confinement mounts, and whatever buildah leaves mounted, go with it.
		attr.Unshareflags = syscall.CLONE_NEWNS
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = cwd
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what the container's end would take with it
	}
	code := cmd.ProcessState.ExitCode()
	if ctx.Err() != nil {
		return code, fmt.Errorf("step %s: TaskRun timed out after %s", step.Name, r.Timeout)
	}
	if err != nil {
		return code, fmt.Errorf("%q exited with code %d", "step-"+step.Name, code)
	}
	return 0, nil
}

// PipelineRunRequest is what a PipelineRun object would say.
type PipelineRunRequest struct {
	Name       string
	Pipeline   string
	Params     v1.Params
	Workspaces map[string]string // pipeline workspace -> host dir
	// Only, when set, runs just these pipeline tasks (which must not depend on
	// others): a benchmark's single-arch builds with the Pipeline's own wiring.
	Only []string
}

// PipelineRun is a finished PipelineRun.
type PipelineRun struct {
	Object   *v1.PipelineRun
	Spec     *v1.PipelineSpec // after params, context and workspace substitution
	TaskRuns map[string]*TaskRun
	Results  map[string]string // Pipeline results, as the Pipeline declares them
	Err      error
	Started  time.Time
	Finished time.Time
}

// Duration is the PipelineRun's wall time.
func (p *PipelineRun) Duration() time.Duration { return p.Finished.Sub(p.Started) }

// RunPipeline runs a PipelineRun: Tekton's param, context and workspace
// substitution on the Pipeline's spec, its DAG to schedule TaskRuns (those
// whose dependencies are done run in parallel), its result-reference
// resolution to wire each TaskRun's params, and its resolution of the
// Pipeline's results. After a failure no new TaskRun starts.
func (r *Runner) RunPipeline(ctx context.Context, req PipelineRunRequest) *PipelineRun {
	out := &PipelineRun{Started: time.Now(), TaskRuns: map[string]*TaskRun{}, Results: map[string]string{}}
	defer func() { out.Finished = time.Now() }()
	pr := &v1.PipelineRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.SchemeGroupVersion.String(), Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: "default", UID: newUID()},
		Spec:       v1.PipelineRunSpec{PipelineRef: &v1.PipelineRef{Name: req.Pipeline}, Params: req.Params},
	}
	for n := range req.Workspaces {
		pr.Spec.Workspaces = append(pr.Spec.Workspaces, v1.WorkspaceBinding{Name: n, EmptyDir: &corev1.EmptyDirVolumeSource{}})
	}
	sort.Slice(pr.Spec.Workspaces, func(i, j int) bool { return pr.Spec.Workspaces[i].Name < pr.Spec.Workspaces[j].Name })
	out.Object = pr
	fail := func(err error) *PipelineRun {
		out.Err = err
		pr.Status.MarkFailed(v1.PipelineRunReasonFailed.String(), "%s", err.Error())
		return out
	}

	p, ok := r.Catalog.Pipelines[req.Pipeline]
	if !ok {
		return fail(fmt.Errorf("pipeline %q is not in the catalog %s", req.Pipeline, r.Catalog.Dir))
	}
	vctx := validate.Context()
	p = p.DeepCopy()
	p.SetDefaults(vctx)
	pr.SetDefaults(vctx)
	if fe := pr.Validate(vctx); fe != nil {
		return fail(fmt.Errorf("PipelineRun %s is invalid: %w", pr.Name, fe))
	}
	ps := &p.Spec
	if err := errors.Join(
		prres.ValidateRequiredParametersProvided(&ps.Params, &pr.Spec.Params),
		prres.ValidateParamTypesMatching(ps, pr),
		prres.ValidateWorkspaceBindings(ps, pr),
	); err != nil {
		return fail(err)
	}
	if len(ps.Finally) > 0 {
		return fail(fmt.Errorf("pipeline %s has finally tasks, which this harness does not run", p.Name))
	}
	ps, err := prres.ApplyParameters(ps, pr)
	if err != nil {
		return fail(err)
	}
	ps = prres.ApplyContexts(ps, p.Name, pr)
	ps = prres.ApplyWorkspaces(ps, pr)
	out.Spec = ps

	tasks := v1.PipelineTaskList(ps.Tasks)
	if len(req.Only) > 0 {
		only := map[string]bool{}
		for _, n := range req.Only {
			only[n] = true
		}
		var sel v1.PipelineTaskList
		for _, pt := range tasks {
			if only[pt.Name] {
				for _, d := range pt.Deps() {
					if !only[d] {
						return fail(fmt.Errorf("pipeline task %s depends on %s, which is not selected", pt.Name, d))
					}
				}
				sel = append(sel, pt)
			}
		}
		if len(sel) != len(only) {
			return fail(fmt.Errorf("pipeline %s lacks some of the tasks %v", p.Name, req.Only))
		}
		tasks = sel
	}
	g, err := dag.Build(tasks, tasks.Deps())
	if err != nil {
		return fail(err)
	}
	var state prres.PipelineRunState
	byName := map[string]*prres.ResolvedPipelineTask{}
	for i := range tasks {
		rpt := &prres.ResolvedPipelineTask{PipelineTask: &tasks[i], TaskRunNames: []string{pr.Name + "-" + tasks[i].Name}}
		state = append(state, rpt)
		byName[tasks[i].Name] = rpt
	}

	type finished struct {
		name string
		run  *TaskRun
	}
	done := make(chan finished)
	started := map[string]bool{}
	var succeeded []string
	var errs []error
	running := 0
	for {
		if len(errs) == 0 {
			cands, err := dag.GetCandidateTasks(g, succeeded...)
			if err != nil {
				errs = append(errs, err)
			}
			for _, name := range cands.List() {
				if started[name] {
					continue
				}
				started[name] = true
				rpt := byName[name]
				refs, _, err := prres.ResolveResultRef(state, rpt)
				if err != nil {
					errs = append(errs, fmt.Errorf("pipeline task %s: %w", name, err))
					continue
				}
				prres.ApplyTaskResults(prres.PipelineRunState{rpt}, refs)
				pt := rpt.PipelineTask
				if pt.TaskRef == nil || pt.TaskRef.Name == "" {
					errs = append(errs, fmt.Errorf("pipeline task %s: only taskRef by name is supported", name))
					continue
				}
				trReq := TaskRunRequest{Name: rpt.TaskRunNames[0], Task: pt.TaskRef.Name, Params: pt.Params, Workspaces: map[string]string{}}
				for _, w := range pt.Workspaces {
					if host, ok := req.Workspaces[w.Workspace]; ok {
						trReq.Workspaces[w.Name] = filepath.Join(host, w.SubPath)
					}
				}
				running++
				go func() { done <- finished{name, r.RunTask(ctx, trReq)} }()
			}
		}
		if running == 0 {
			break
		}
		f := <-done
		running--
		out.TaskRuns[f.name] = f.run
		byName[f.name].TaskRuns = []*v1.TaskRun{f.run.Object}
		if f.run.Succeeded() {
			succeeded = append(succeeded, f.name)
		} else {
			errs = append(errs, fmt.Errorf("pipeline task %s (TaskRun %s) failed: %w", f.name, f.run.Object.Name, f.run.Err))
		}
	}
	if len(errs) > 0 {
		return fail(errors.Join(errs...))
	}
	if len(succeeded) != len(tasks) {
		return fail(fmt.Errorf("only %v of %d pipeline tasks ran", succeeded, len(tasks)))
	}
	if len(req.Only) > 0 {
		pr.Status.MarkSucceeded(v1.PipelineRunReasonSuccessful.String(), "partial run: %v", req.Only)
		return out
	}

	trResults := map[string][]v1.TaskRunResult{}
	statuses := map[string]string{}
	for name, tr := range out.TaskRuns {
		trResults[name] = tr.Object.Status.Results
		statuses[prres.PipelineTaskStatusPrefix+name+prres.PipelineTaskStatusSuffix] = v1.TaskRunReasonSuccessful.String()
	}
	results, err := prres.ApplyTaskResultsToPipelineResults(ps.Results, trResults, nil, statuses)
	if err != nil {
		return fail(err)
	}
	for _, res := range results {
		if res.Value.Type != v1.ParamTypeString {
			return fail(fmt.Errorf("pipeline result %s is of type %s: the harness reads string results only", res.Name, res.Value.Type))
		}
		out.Results[res.Name] = res.Value.StringVal
	}
	pr.Status.Results = results
	pr.Status.MarkSucceeded(v1.PipelineRunReasonSuccessful.String(), "all tasks succeeded")
	return out
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// prefixWriter prefixes every line; parallel TaskRuns share one writer.
type prefixWriter struct {
	w       io.Writer
	prefix  string
	partial []byte
}

var outMu sync.Mutex

func (p *prefixWriter) Write(b []byte) (int, error) {
	outMu.Lock()
	defer outMu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial[:i]); err != nil {
			return 0, err
		}
		p.partial = p.partial[i+1:]
	}
	return len(b), nil
}

// runInContainer runs a step in a real container of r.Container's image, as
// a pod would: the step's volumes, results and script bound at their paths
// in the pod, its env as Tekton set it (no path rewritten), the image's own
// environment under it, the Localhost seccomp profile, no /dev/fuse unless
// passed.
func (r *Runner) runInContainer(ctx context.Context, out *TaskRun, dir string, i int, step *v1.Step, stepScript string, mounts []mount, log *lockedBuffer) (int, error) {
	for _, e := range step.Env {
		if e.ValueFrom != nil {
			return -1, fmt.Errorf("step %s env %s uses valueFrom, which this harness does not map", step.Name, e.Name)
		}
	}
	scripts := filepath.Join(dir, "scripts")
	name := fmt.Sprintf("script-%d-%s", i, step.Name)
	if err := os.WriteFile(filepath.Join(scripts, name), []byte(stepScript), 0o755); err != nil {
		return -1, err
	}
	run := ContainerRun{
		Image: r.Container.Image, Seccomp: r.Container.Seccomp, Devices: r.Container.Devices,
		Mounts: append([]Bind{{Host: scripts, Path: "/tekton/scripts", ReadOnly: true}}, r.Container.Mounts...),
		Cwd:    "/",
		Args:   append([]string{"/bin/sh", "/tekton/scripts/" + name}, step.Args...),
	}
	for _, m := range mounts {
		run.Mounts = append(run.Mounts, Bind{Host: m.host, Path: m.path})
	}
	for _, e := range step.Env {
		run.Env = append(run.Env, e.Name+"="+e.Value)
	}
	var w io.Writer = log
	if r.Out != nil {
		w = io.MultiWriter(log, &prefixWriter{w: r.Out, prefix: fmt.Sprintf("[%s/%s] ", out.Object.Name, step.Name)})
	}
	run.Stdout = w
	fmt.Fprintf(log, "--- step %s (container %s)\n", step.Name, r.Container.Image)
	code, err := r.Container.Containerd.Run(ctx, containerID(out.Object.Name+"-"+step.Name), run)
	if ctx.Err() != nil {
		return code, fmt.Errorf("step %s: TaskRun timed out after %s", step.Name, r.Timeout)
	}
	if err != nil {
		return code, fmt.Errorf("step %s: %w", step.Name, err)
	}
	if code != 0 {
		return code, fmt.Errorf("%q exited with code %d", "step-"+step.Name, code)
	}
	return 0, nil
}
