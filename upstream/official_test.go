package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spacerelay/spacerelay/upstream/gradiotest"
)

// driverTimeout bounds one run of a driver; a run takes a few seconds.
const driverTimeout = 90 * time.Second

// A driver runs the scenarios of testdata/clients with an official client.
type driver struct {
	name string
	cmd  func(url, out, token string) *exec.Cmd
}

// TestOfficialClients runs gradio_client (Python) and @gradio/client (Node)
// against the demo Space and every real Gradio, through the same scenarios
// (see testdata/clients/driver.py), and checks that each client sees the
// same thing on the demo as on real Gradio: the same outputs, the same
// exceptions, the same pixels in the files.
func TestOfficialClients(t *testing.T) {
	pys := gradiotest.Pythons(t)
	drivers := officialDrivers(t, pys)
	type run struct {
		reports map[string]map[string]any // per driver
		dirs    map[string]string
	}
	root := t.TempDir() // the subtests' own would be gone before the comparison
	runAll := func(t *testing.T, url string) run {
		r := run{reports: map[string]map[string]any{}, dirs: map[string]string{}}
		for _, d := range drivers {
			dir, err := os.MkdirTemp(root, "driver")
			if err != nil {
				t.Fatal(err)
			}
			r.dirs[d.name] = dir
			r.reports[d.name] = runDriver(t, d, url, dir)
		}
		return r
	}
	results := make(chan struct {
		name string
		run  run
	}, len(pys)+1)
	t.Run("spaces", func(t *testing.T) {
		t.Run("demo", func(t *testing.T) {
			t.Parallel()
			results <- struct {
				name string
				run  run
			}{"demo", runAll(t, startDemo(t).url)}
		})
		for _, py := range pys {
			t.Run("gradio-"+py.Version, func(t *testing.T) {
				t.Parallel()
				srv := gradiotest.Start(t, py, gradiotest.Options{StepSeconds: stepSeconds})
				results <- struct {
					name string
					run  run
				}{"gradio-" + py.Version, runAll(t, srv.URL)}
			})
		}
	})
	close(results)
	got := map[string]run{}
	for r := range results {
		got[r.name] = r.run
	}
	demo, ok := got["demo"]
	if !ok || t.Failed() {
		return
	}
	for name, real := range got {
		if name == "demo" {
			continue
		}
		for _, d := range drivers {
			t.Run(d.name+" on "+name, func(t *testing.T) {
				compareReports(t, real.reports[d.name], demo.reports[d.name])
				for _, f := range []string{"generate.png", "preview.png", "restyle.png"} {
					comparePixels(t, filepath.Join(real.dirs[d.name], f), filepath.Join(demo.dirs[d.name], f))
				}
			})
		}
	}
}

// officialDrivers finds what the drivers need: a Python with gradio_client
// (the newest pinned Gradio's) and Node with the pinned @gradio/client.
// Without them the test skips locally, saying what is missing, and fails
// under CI=true.
func officialDrivers(t *testing.T, pys []gradiotest.Python) []driver {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "testdata", "clients")
	missing := func(msg string) {
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if len(pys) == 0 {
		missing("no Python with gradio_client in " + gradiotest.EnvVar)
	}
	py := pys[0]
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH: the @gradio/client driver needs Node 20 or newer")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@gradio", "client", "package.json")); err != nil {
		missing("@gradio/client is not installed: run `npm ci` in testdata/clients (the test task does)")
	}
	return []driver{
		{"gradio_client " + py.Version, func(url, out, token string) *exec.Cmd {
			return exec.Command(py.Path, filepath.Join(dir, "driver.py"), url, out, token)
		}},
		{"@gradio/client", func(url, out, token string) *exec.Cmd {
			return exec.Command(node, filepath.Join(dir, "driver.mjs"), url, out, token)
		}},
	}
}

// runDriver runs d against url, writing files to out, and decodes its report.
func runDriver(t *testing.T, d driver, url, out string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), driverTimeout)
	defer cancel()
	token := "official-" + strings.Fields(d.name)[0]
	cmd := d.cmd(url, out, token)
	cmd.Env = append(os.Environ(), "HF_HUB_DISABLE_TELEMETRY=1", "HF_HUB_OFFLINE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s against %s: %v\n%s", d.name, url, err, stderr.String())
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s against %s: no report within %v\n%s", d.name, url, driverTimeout, stderr.String())
	}
	var report map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("%s: the report is not JSON (%v):\n%s\n%s", d.name, err, stdout.String(), stderr.String())
	}
	return normalize(report).(map[string]any)
}

// normalize makes one change to a report: gradio_client ends a cancelled
// job with CancelledError or KeyError("Could not find 'data' key"),
// whichever of its two threads wins (on real Gradio as on the demo; see
// testdata/gradio/SPEC.md), so both read "cancelled".
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "cancelled" {
				v[k] = true
				continue
			}
			v[k] = normalize(x)
		}
	case []any:
		for i := range v {
			v[i] = normalize(v[i])
		}
	}
	return v
}

func compareReports(t *testing.T, real, demo map[string]any) {
	t.Helper()
	keys := map[string]bool{}
	for k := range real {
		keys[k] = true
	}
	for k := range demo {
		keys[k] = true
	}
	for k := range keys {
		if !reflect.DeepEqual(real[k], demo[k]) {
			r, _ := json.Marshal(real[k])
			d, _ := json.Marshal(demo[k])
			t.Errorf("scenario %s:\n  real Gradio: %s\n  demo Space:  %s", k, r, d)
		}
	}
}

// comparePixels checks that two PNG files (encoded by PIL and by Go, so
// not byte for byte the same) hold the same image.
func comparePixels(t *testing.T, realFile, demoFile string) {
	t.Helper()
	decode := func(p string) image.Image {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return img
	}
	r, d := decode(realFile), decode(demoFile)
	if r.Bounds().Size() != d.Bounds().Size() {
		t.Errorf("%s: %v on real Gradio, %v on the demo", filepath.Base(realFile), r.Bounds().Size(), d.Bounds().Size())
		return
	}
	for y := range r.Bounds().Dy() {
		for x := range r.Bounds().Dx() {
			r1, g1, b1, _ := r.At(r.Bounds().Min.X+x, r.Bounds().Min.Y+y).RGBA()
			r2, g2, b2, _ := d.At(d.Bounds().Min.X+x, d.Bounds().Min.Y+y).RGBA()
			if [3]uint32{r1, g1, b1} != [3]uint32{r2, g2, b2} {
				t.Errorf("%s: pixel (%d,%d) = %s on the demo, %s on real Gradio", filepath.Base(realFile), x, y,
					fmt.Sprint([3]uint32{r2 >> 8, g2 >> 8, b2 >> 8}), fmt.Sprint([3]uint32{r1 >> 8, g1 >> 8, b1 >> 8}))
				return
			}
		}
	}
}
