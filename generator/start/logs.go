package start

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
)

// logOpener opens a container's log, following it while the container runs.
type logOpener func(ctx context.Context, ns, pod, container string) (io.ReadCloser, error)

func kubeLogs(k kubernetes.Interface) logOpener {
	return func(ctx context.Context, ns, pod, container string) (io.ReadCloser, error) {
		return k.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	}
}

// Timings of the log streams, variables for the tests.
var (
	// openTimeout bounds opening one log: the API server reaches the
	// node's kubelet, and a node without one (kwok's) may not answer at
	// all. The status lines go on meanwhile.
	openTimeout = 20 * time.Second
	// drainTimeout is how long, once the run has ended, the streams get to
	// print what the nodes still have: every container has exited by then,
	// so each stream is at its end but for the transfer.
	drainTimeout = 30 * time.Second
)

var errOpenTimeout = fmt.Errorf("the node did not answer within %s", openTimeout)

// maxLine bounds one printed line; a longer one (a progress bar without
// newlines) is printed in pieces of this size, each still whole and
// prefixed.
const maxLine = 64 << 10

// lineWriter serialises whole lines from concurrent streams and the status
// lines onto one output: a line is one Write, never two halves.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

// streams prints each TaskRun's step logs as they come, every line prefixed
// with what the TaskRun builds (its platform) or its pipeline task, as the
// Follow loop sees TaskRuns get pods and steps start. A TaskRun's steps run
// one after another (Tekton's entrypoint), so its logs are read in step
// order, each to its end, in one goroutine per TaskRun.
type streams struct {
	ctx    context.Context
	cancel context.CancelFunc
	ns     string
	open   logOpener
	out    *lineWriter
	wg     sync.WaitGroup

	mu   sync.Mutex
	runs map[string]*trLogs // by TaskRun name
}

// trLogs is one TaskRun's latest state, for its goroutine.
type trLogs struct {
	mu      sync.Mutex
	tr      *v1.TaskRun
	changed chan struct{} // one pending signal: tr has changed
}

func newStreams(ctx context.Context, ns string, open logOpener, out *lineWriter) *streams {
	ctx, cancel := context.WithCancel(ctx)
	return &streams{ctx: ctx, cancel: cancel, ns: ns, open: open, out: out, runs: map[string]*trLogs{}}
}

// update hands the goroutine of tr its new state, starting it once tr has a
// pod.
func (s *streams) update(tr *v1.TaskRun) {
	if s == nil || tr.Status.PodName == "" {
		return
	}
	s.mu.Lock()
	l, ok := s.runs[tr.Name]
	if !ok {
		l = &trLogs{changed: make(chan struct{}, 1)}
		s.runs[tr.Name] = l
	}
	s.mu.Unlock()
	l.mu.Lock()
	l.tr = tr
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
	if !ok {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.follow(l)
		}()
	}
}

// finish waits for the streams to print what is left, at most
// drainTimeout, then stops them.
func (s *streams) finish() {
	if s == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		s.cancel()
		<-done
	}
	s.cancel()
}

// stop ends the streams at once (Ctrl-C, --timeout).
func (s *streams) stop() {
	if s == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}

// follow prints the logs of one TaskRun's steps in order, each once it has
// started, until the last step's ends or the TaskRun ends with steps that
// never started.
func (s *streams) follow(l *trLogs) {
	for i := 0; ; i++ {
		var step, pod, prefix string
		for {
			l.mu.Lock()
			tr := l.tr
			l.mu.Unlock()
			started, last, ended := stepStarted(tr, i)
			if started {
				step, pod, prefix = tr.Status.Steps[i].Container, tr.Status.PodName, linePrefix(tr, tr.Status.Steps[i].Name)
				break
			}
			if last || ended {
				return
			}
			select {
			case <-s.ctx.Done():
				return
			case <-l.changed:
			}
		}
		if err := s.stream(pod, step, prefix); err != nil {
			// The API server's URL of the kubelet says nothing a user
			// can act on; what failed does.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			if s.ctx.Err() == nil {
				// A node that serves no logs (kwok's), or an identity
				// that may not read them: the status lines go on.
				fmt.Fprintf(s.out, "%sno step logs (%v); following the status only\n", prefix, err)
			}
			return
		}
	}
}

// stepStarted is whether step i of tr has started (its container running or
// ended); else whether there is no step i, or tr has ended without it.
func stepStarted(tr *v1.TaskRun, i int) (started, last, ended bool) {
	if i >= len(tr.Status.Steps) {
		// Tekton lists every step once the pod exists: past the list is
		// past the last step, unless the list is not filled in yet.
		return false, len(tr.Status.Steps) > 0, tr.IsDone()
	}
	st := tr.Status.Steps[i]
	return st.Running != nil || st.Terminated != nil, false, tr.IsDone()
}

// stream copies one container's log to the output line by line.
func (s *streams) stream(pod, container, prefix string) error {
	// The open alone is bounded: the stream itself lasts as long as the step.
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	timer := time.AfterFunc(openTimeout, func() { cancel(errOpenTimeout) })
	rc, err := s.open(ctx, s.ns, pod, container)
	if !timer.Stop() {
		if err == nil {
			rc.Close()
		}
		return errOpenTimeout
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	return copyLines(s.out, bufio.NewReaderSize(rc, 32<<10), prefix)
}

// copyLines writes every line of r to out, prefixed, one Write per line. A
// last line without a newline is a line too.
func copyLines(out io.Writer, r *bufio.Reader, prefix string) error {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		full := err == nil
		if errors.Is(err, bufio.ErrBufferFull) && len(line) < maxLine {
			continue
		}
		if len(line) > 0 {
			text := strings.TrimRight(string(line), "\r\n")
			if _, werr := io.WriteString(out, prefix+text+"\n"); werr != nil {
				return werr
			}
			line = line[:0]
		}
		switch {
		case full, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF), errors.Is(err, context.Canceled):
			return nil
		default:
			return err
		}
	}
}

// linePrefix names where a log line comes from: the platform a build
// TaskRun builds (its PLATFORM param, as docker buildx names parallel
// builds), else its pipeline task; a step other than the task's main one
// (the build's clone) is named too.
func linePrefix(tr *v1.TaskRun, step string) string {
	subject, main := tr.Labels["tekton.dev/pipelineTask"], ""
	if subject == "" {
		subject = tr.Name
	}
	for _, p := range tr.Spec.Params {
		if p.Name == "PLATFORM" && p.Value.StringVal != "" {
			subject, main = p.Value.StringVal, tasks.BuildStep
		}
	}
	if step == main || step == subject || len(tr.Status.Steps) == 1 {
		return "[" + subject + "] "
	}
	return "[" + subject + " " + step + "] "
}
