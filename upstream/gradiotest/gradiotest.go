// Package gradiotest runs the test Space, testdata/gradio/app.py, under a real
// Gradio so that tests can talk to it over loopback.
//
// The Pythons come from the environment variable SPACERELAY_GRADIO, which the
// Taskfile's test task sets to one virtual environment per pinned Gradio:
//
//	SPACERELAY_GRADIO=6.31.0=/path/venv6/bin/python,5.50.0=/path/venv5/bin/python
//
// A typical test:
//
//	for _, py := range gradiotest.Pythons(t) {
//		t.Run(py.Version, func(t *testing.T) {
//			t.Parallel()
//			srv := gradiotest.Start(t, py, gradiotest.Options{})
//			// talk to srv.URL
//		})
//	}
package gradiotest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvVar names the environment variable that lists the Pythons.
const EnvVar = "SPACERELAY_GRADIO"

const (
	startTimeout = 60 * time.Second // until GET /config answers
	stopTimeout  = 5 * time.Second  // from SIGTERM to SIGKILL
	pollInterval = 100 * time.Millisecond
	pollTimeout  = 5 * time.Second // per GET /config while starting
)

// Python is an interpreter with a pinned Gradio installed.
type Python struct {
	Version string // the exact Gradio version, e.g. "6.31.0"
	Path    string // the interpreter, e.g. ".cache/gradio-6.31.0/bin/python"
}

// Pythons returns the Pythons listed in SPACERELAY_GRADIO, as comma-separated
// version=path pairs. If the variable is empty, the test is skipped, or fails
// when CI=true. A malformed entry or a missing interpreter fails the test.
func Pythons(t testing.TB) []Python {
	t.Helper()
	list := strings.TrimSpace(os.Getenv(EnvVar))
	if list == "" {
		msg := "gradiotest: " + EnvVar + " is not set, so there is no real Gradio to test against; " +
			"want comma-separated version=/path/to/python pairs, one per pinned Gradio"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (`go tool -modfile=tools/task.mod task test` sets it up)")
	}
	var pys []Python
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		version, path, ok := strings.Cut(entry, "=")
		if !ok || version == "" || path == "" {
			t.Fatalf("gradiotest: %s: entry %q is not version=/path/to/python", EnvVar, entry)
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("gradiotest: %s: Gradio %s: %v", EnvVar, version, err)
		}
		pys = append(pys, Python{Version: version, Path: path})
	}
	return pys
}

// Options configure the test Space. The zero value gives SPEC.md's defaults.
type Options struct {
	// App is the Python script to run instead of testdata/gradio/app.py,
	// as a path from the module root, such as
	// "upstream/testdata/discovery_app.py". It must take app.py's --fd and
	// --watch-stdin flags. The other options are app.py's.
	App string
	// StepSeconds is the sleep per step (FIXTURE_STEP_SECONDS).
	// Zero means the app's default, 0.1.
	StepSeconds float64
	// QuotaSeconds is each token's ZeroGPU quota (FIXTURE_QUOTA_SECONDS).
	// Zero means the app's default, 60.
	QuotaSeconds int
}

// Server is a running test Space.
type Server struct {
	URL     string // e.g. "http://127.0.0.1:40123", no trailing slash
	Version string // the Gradio version, as /config reports it

	cmd   *exec.Cmd
	stdin io.WriteCloser // held open: the child exits when it closes
	out   *buffer
	done  chan struct{} // closed once the process is reaped
	err   error         // the process's exit status; read after done
}

// Start runs app.py with py on a free loopback port and waits until GET
// /config answers 200 and reports py.Version. It fails the test if the server
// does not come up within a minute. A cleanup stops the server (SIGTERM, then
// SIGKILL) and, if the test failed, logs the server's output.
// Start may be called from parallel tests.
func Start(t testing.TB, py Python, opts Options) *Server {
	t.Helper()
	rel := opts.App
	if rel == "" {
		rel = "testdata/gradio/app.py"
	}
	app, err := modulePath(rel)
	if err != nil {
		t.Fatalf("gradiotest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gradiotest: %v", err)
	}
	// The child serves on the socket we hold, so no other test can take the
	// port between choosing it and binding it.
	sock, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatalf("gradiotest: %v", err)
	}

	s := &Server{
		URL:  "http://" + ln.Addr().String(),
		out:  new(buffer),
		done: make(chan struct{}),
	}
	s.cmd = exec.Command(py.Path, app, "--fd", "3", "--watch-stdin")
	s.cmd.Dir = filepath.Dir(app)
	s.cmd.Env = append(os.Environ(), env(t, opts)...)
	s.cmd.ExtraFiles = []*os.File{sock}
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	s.cmd.WaitDelay = stopTimeout
	// The child exits when this pipe closes, which happens at the latest
	// when the test binary dies; it is closed by Wait otherwise.
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatalf("gradiotest: %v", err)
	}
	err = s.cmd.Start()
	sock.Close() // the child has its own copy; ours would keep the port open
	if err != nil {
		t.Fatalf("gradiotest: start Gradio %s: %v", py.Version, err)
	}
	go s.wait()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("gradiotest: Gradio %s at %s, output:\n%s", py.Version, s.URL, s.out)
		}
	})

	version, err := s.waitReady()
	if err != nil {
		t.Fatalf("gradiotest: Gradio %s at %s: %v (its output follows)", py.Version, s.URL, err)
	}
	if version != py.Version {
		t.Fatalf("gradiotest: %s says Gradio %s, but %s lists it as %s", py.Path, version, EnvVar, py.Version)
	}
	s.Version = version
	return s
}

// Kill kills the server at once with SIGKILL, as a crash would, and waits
// until it is gone. It may be called more than once, and before the cleanup.
func (s *Server) Kill() {
	s.cmd.Process.Kill() // fails only if the process is already gone
	<-s.done
}

func (s *Server) wait() {
	s.err = s.cmd.Wait()
	close(s.done)
}

// stop asks the server to shut down, kills it if it takes too long, and
// waits until it is reaped.
func (s *Server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.Kill()
	}
}

// waitReady polls GET /config until it answers 200, and returns the Gradio
// version it reports.
func (s *Server) waitReady() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		version, err := getVersion(ctx, client, s.URL+"/config")
		if err == nil {
			return version, nil
		}
		last = err
		select {
		case <-s.done:
			return "", fmt.Errorf("exited before it was ready: %v", s.err)
		case <-ctx.Done():
			return "", fmt.Errorf("not ready after %v: %w", startTimeout, last)
		case <-time.After(pollInterval):
		}
	}
}

func getVersion(ctx context.Context, client *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /config: %s", resp.Status)
	}
	var config struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&config); err != nil {
		return "", fmt.Errorf("GET /config: %w", err)
	}
	return config.Version, nil
}

// env returns the child's extra environment for opts.
func env(t testing.TB, opts Options) []string {
	vars := []string{
		"PYTHONUNBUFFERED=1",
		"PYTHONDONTWRITEBYTECODE=1",
		// Gradio caches output files here; one directory per server keeps
		// parallel servers apart and is removed after the test.
		"GRADIO_TEMP_DIR=" + t.TempDir(),
	}
	if opts.StepSeconds != 0 {
		vars = append(vars, "FIXTURE_STEP_SECONDS="+strconv.FormatFloat(opts.StepSeconds, 'g', -1, 64))
	}
	if opts.QuotaSeconds != 0 {
		vars = append(vars, "FIXTURE_QUOTA_SECONDS="+strconv.Itoa(opts.QuotaSeconds))
	}
	return vars
}

// modulePath finds rel, a path from the module root: next to this source
// file if the build kept its path, else above the working directory.
func modulePath(rel string) (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		p := filepath.Join(filepath.Dir(file), "..", "..", rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err != nil {
				return "", err
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find " + rel + ": no go.mod above the working directory")
		}
		dir = parent
	}
}

// buffer is a bytes.Buffer that the child's output can be written to while
// a test reads it.
type buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
