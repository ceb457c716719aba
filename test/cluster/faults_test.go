package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// A fault breaks something a running build depends on, then puts it right,
// so that each fault of the fault tests is one table row. arm is called
// right after the run is created and may wait for the moment it breaks
// things (or leave that to a trigger); heal puts everything back and is
// always called, also when the test failed. broke says when it broke, zero
// if it never did.
type fault interface {
	arm(t testing.TB, r *prRun)
	heal(t testing.TB)
	broke() time.Time
}

// registryFront is a reverse proxy in front of the real registry, for the
// runs of the fault tests: pods push through it, and it can take the
// registry away from them, as a registry that restarts or is down does.
// While down it resets every connection it holds and every new one
// (ECONNRESET, what a client sees of a registry process that died), and no
// request reaches the registry. It listens on the pods' bridge, inside the
// stack's network namespace.
type registryFront struct {
	addr string // host:port the pods push to

	mu      sync.Mutex
	trigger func(*http.Request) bool // the request that starts the outage, while armed
	outage  time.Duration            // how long the outage lasts; 0: until healed
	downAt  time.Time                // when the outage began; zero: not yet
	downTil time.Time                // when it ends; zero with downAt set: until healed
	resets  int                      // connections reset
	conns   map[net.Conn]struct{}
}

// startRegistryFront listens on the bridge at port, proxying to upstream.
func (s *stack) startRegistryFront(t testing.TB, port int, upstream string) *registryFront {
	t.Helper()
	f := &registryFront{addr: listenAddr(port), conns: map[net.Conn]struct{}{}}
	ln, err := netnsListen(s.nsPath, "tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	target := &url.URL{Scheme: "http", Host: upstream}
	proxy := httputil.NewSingleHostReverseProxy(target)
	// The registry's own transport, inside the namespace; the Host header
	// stays the front's, so upload Locations point back here.
	proxy.Transport = &http.Transport{DialContext: netnsDialer(s.nsPath), ResponseHeaderTimeout: time.Minute}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if f.down(req) {
				f.reset(w)
				return
			}
			proxy.ServeHTTP(w, req)
		}),
		ConnState: func(c net.Conn, st http.ConnState) {
			f.mu.Lock()
			defer f.mu.Unlock()
			switch st {
			case http.StateNew:
				f.conns[c] = struct{}{}
			case http.StateClosed, http.StateHijacked:
				delete(f.conns, c)
			}
		},
		ReadHeaderTimeout: 30 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("registry front: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	})
	return f
}

// down says whether req meets a registry that is down, starting the armed
// outage when req is its trigger.
func (f *registryFront) down(req *http.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if f.downAt.IsZero() && f.trigger != nil && f.trigger(req) {
		f.downAt = now
		if f.outage > 0 {
			f.downTil = now.Add(f.outage)
		}
		// A registry that stops drops the connections it has too.
		for c := range f.conns {
			resetConn(c)
		}
	}
	if f.downAt.IsZero() {
		return false
	}
	if !f.downTil.IsZero() && now.After(f.downTil) {
		return false
	}
	return true
}

func (f *registryFront) reset(w http.ResponseWriter) {
	f.mu.Lock()
	f.resets++
	f.mu.Unlock()
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "registry down", http.StatusServiceUnavailable)
		return
	}
	c, _, err := hj.Hijack()
	if err != nil {
		return
	}
	resetConn(c)
}

// resetConn closes c with a TCP reset rather than a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// registryOutage is a fault: the registry goes away at the first request
// that trigger matches (a build's first blob upload, the index's manifest
// PUT), for outage, or until healed when outage is 0.
type registryOutage struct {
	front   *registryFront
	at      time.Time // when it broke, kept past heal
	what    string    // what the trigger is, for the log
	trigger func(*http.Request) bool
	outage  time.Duration
}

func (o *registryOutage) arm(t testing.TB, r *prRun) {
	f := o.front
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trigger, f.outage, f.downAt, f.downTil, f.resets = o.trigger, o.outage, time.Time{}, time.Time{}, 0
	t.Logf("registry front armed: down at %s, for %s", o.what, durationOrHealed(o.outage))
}

func (o *registryOutage) heal(t testing.TB) {
	f := o.front
	f.mu.Lock()
	defer f.mu.Unlock()
	o.at = f.downAt
	if !f.downAt.IsZero() {
		t.Logf("registry front: down at %s for %s, %d connections reset", f.downAt.Format(time.RFC3339Nano),
			durationOrHealed(o.outage), f.resets)
	}
	f.trigger, f.downAt, f.downTil = nil, time.Time{}, time.Time{}
}

func (o *registryOutage) broke() time.Time { return o.at }

func durationOrHealed(d time.Duration) string {
	if d == 0 {
		return "good (until healed)"
	}
	return d.String()
}

// blobUpload matches the first request of a layer push to repository.
func blobUpload(repository string) func(*http.Request) bool {
	return func(req *http.Request) bool {
		return req.Method == http.MethodPost && req.URL.Path == "/v2/"+repository+"/blobs/uploads/"
	}
}

// manifestPut matches the push of repository:tag.
func manifestPut(repository, tag string) func(*http.Request) bool {
	return func(req *http.Request) bool {
		return req.Method == http.MethodPut && req.URL.Path == "/v2/"+repository+"/manifests/"+tag
	}
}

// controllerRestart is a fault: Tekton's controller stops once every build
// pod of the run is running, and starts again after down (an upgrade).
type controllerRestart struct {
	s      *stack
	down   time.Duration
	at     time.Time
	starts int
}

func (c *controllerRestart) arm(t testing.TB, r *prRun) {
	t.Helper()
	c.s.waitBuildPodsRunning(t, r)
	c.at = time.Now()
	c.s.stopNow(t, c.s.tektonController)
	t.Logf("Tekton controller stopped with the builds running; starting it again in %s", c.down)
	time.Sleep(c.down)
	c.starts++
	c.s.tektonController = c.s.startTektonController(fmt.Sprintf("tekton-controller-%d", c.starts+1))
}

func (c *controllerRestart) heal(testing.TB)  {}
func (c *controllerRestart) broke() time.Time { return c.at }
