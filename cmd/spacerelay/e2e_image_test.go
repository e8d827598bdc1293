//go:build linux

package main

// Issue 15, items 4 and 5: the relay as its image runs it, behind the
// Spaces proxy. No container runs here (no image can be pulled, and there
// is no Docker engine), so the test does what the Dockerfile says, step by
// step: it copies the build context as .dockerignore leaves it, runs the
// build stage's RUN commands in it with the stage's ENV, installs the
// binary and a frontend into a directory that uid 1000 cannot write, and
// runs the last stage's ENTRYPOINT and HEALTHCHECK as the stage's USER
// (1000:1000) with the stage's ENV and nothing else but a Space's
// variables. Browser-like visitors then go through spacesProxy to it, in
// front of the real Gradio fixture.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spacerelay/spacerelay/upstream/gradiotest"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
)

// Token lifetimes of the visits: tokens that live imageTokenTTL, and
// token_expiring imageRefreshMargin before their exp.
const (
	imageTokenTTL      = 6 * time.Second
	imageRefreshMargin = 2 * time.Second
	imageVisitors      = 3 // per Gradio version, at once
)

// exampleSite is the example frontend the Space serves (SPACERELAY_STATIC).
const exampleSite = "examples/prompt-to-image"

func TestImage(t *testing.T) {
	if os.Geteuid() != 0 {
		msg := "TestImage runs the relay as uid 1000, which needs root (CI runs as root)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	pys := gradiotest.Pythons(t)
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // the proxy's too; runs last
	root := repoRoot(t)
	df := mustParseDockerfile(t, filepath.Join(root, "Dockerfile"))
	bin := buildAsImage(t, root, df.stage("build"), df.final().copies[0][1])
	img := installImage(t, root, bin, df.final())
	img.checkReadOnly(t)

	for _, py := range pys {
		t.Run(py.Version, func(t *testing.T) {
			t.Parallel()
			// The quota is kept per visitor claim; it is not what this test is about.
			space := gradiotest.Start(t, py, gradiotest.Options{StepSeconds: gradioStepSeconds, QuotaSeconds: 3600})
			testImageBehindProxy(t, img, space.URL)
		})
	}
}

// buildAsImage copies the build context as .dockerignore leaves it and
// runs the build stage's RUN commands in it, with the stage's ENV and ARG
// defaults and no GOFLAGS of this machine's. It returns the binary that
// the last stage's COPY takes (from, a path of the build stage's WORKDIR),
// checked: static, stripped, built as the command says, naming no path of
// this machine. (The Go toolchain is this machine's, not the image's
// golang tag.)
func buildAsImage(t *testing.T, root string, build *stage, from string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	copyContext(t, root, src)
	env := []string{"GOFLAGS="}
	for k, v := range build.args {
		env = append(env, k+"="+v)
	}
	env = append(env, build.env...)
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	start := time.Now()
	for _, run := range build.runs {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", run)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", run, err, out)
		}
	}
	t.Logf("built as the Dockerfile does in %v", time.Since(start).Round(time.Millisecond))
	rel, ok := strings.CutPrefix(from, build.workdir+"/")
	if !ok {
		t.Fatalf("the last stage copies %s, outside the build stage's WORKDIR %s", from, build.workdir)
	}
	bin := filepath.Join(src, filepath.FromSlash(rel))
	checkImageBinary(t, bin, src)
	return bin
}

// An imageTree is the last stage, installed: its files under root, a
// directory owned by this test's root user that uid 1000 can read, not
// write.
type imageTree struct {
	root        string
	stage       *stage
	uid, gid    uint32
	site        string // the example frontend, as a Space would COPY it
	entrypoint  []string
	healthcheck []string
}

// installImage puts the binary where the last stage's COPY puts it, and
// the example frontend at /srv/site as the Space template's commented
// lines would, then takes write permission away from everything.
func installImage(t *testing.T, repo, bin string, s *stage) *imageTree {
	t.Helper()
	dir, err := os.MkdirTemp("", "spacerelay-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	img := &imageTree{root: dir, stage: s, site: "/srv/site"}
	uid, gid, _ := strings.Cut(s.user, ":")
	u, err1 := strconv.ParseUint(uid, 10, 32)
	g, err2 := strconv.ParseUint(gid, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("USER %q: want uid:gid", s.user)
	}
	img.uid, img.gid = uint32(u), uint32(g)
	img.entrypoint = append([]string{img.path(s.entrypoint[0])}, s.entrypoint[1:]...)
	img.healthcheck = append([]string{img.path(s.healthcheck[0])}, s.healthcheck[1:]...)
	err = copyTree(filepath.Join(repo, exampleSite), img.path(img.site), func(string) bool { return false })
	if err == nil {
		err = copyFile(bin, img.entrypoint[0], 0o555)
	}
	if err == nil {
		err = readOnly(dir, img.entrypoint[0])
	}
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// readOnly takes write permission away below dir: directories 0555, files
// 0444, the executable 0555.
func readOnly(dir, executable string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir(), p == executable:
			return os.Chmod(p, 0o555)
		}
		return os.Chmod(p, 0o444)
	})
}

// path is the host path of the image's absolute path p.
func (img *imageTree) path(p string) string { return filepath.Join(img.root, filepath.FromSlash(p)) }

// checkReadOnly checks that the stage's user can write neither into the
// image's directories nor over the binary.
func (img *imageTree) checkReadOnly(t *testing.T) {
	t.Helper()
	for _, target := range []string{img.path("probe"), img.path(img.site + "/probe"), img.entrypoint[0]} {
		cmd := img.command(t.Context(), "/bin/sh", "-c", `: > "$0"`, target)
		cmd.Env = nil
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("uid %d could write %s: the image's directory is not read-only to it (%s)", img.uid, target, out)
		}
	}
}

// command runs name as the stage's user in the image's working directory
// (WORKDIR, else /).
func (img *imageTree) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = img.path(cmp.Or(img.stage.workdir, "/"))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: img.uid, Gid: img.gid},
		Pdeathsig:  syscall.SIGKILL, // set after the credentials, so it holds
	}
	return cmd
}

// env is the container's environment: PATH and HOME as Docker sets them
// for a user with no passwd entry (HOME=/, read-only here), TMPDIR on the
// read-only directory too (nothing may need to write), the stage's ENV,
// then vars (a Space's variables and secrets), later ones winning.
func (img *imageTree) env(vars map[string]string) []string {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + img.root, "TMPDIR=" + img.root}
	env = append(env, img.stage.env...)
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// startImageRelay runs the image's ENTRYPOINT with vars on a free port
// (the one change to the stage's ENV: SPACERELAY_LISTEN keeps its form,
// no host, another port) and its metrics on a loopback listener of their
// own, and waits until it is ready. The cleanup stops it.
func startImageRelay(t *testing.T, img *imageTree, vars map[string]string) *relayProc {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr, err1 := freeAddr()
		maddr, err2 := freeAddr()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		_, port, _ := net.SplitHostPort(addr)
		vars["SPACERELAY_LISTEN"] = ":" + port
		vars["SPACERELAY_METRICS_LISTEN"] = maddr
		r := &relayProc{url: "http://" + addr, wsURL: "ws://" + addr + "/v1/ws", metricsURL: "http://" + maddr + "/metrics",
			out: new(syncBuffer), done: make(chan struct{})}
		r.cmd = img.command(context.Background(), img.entrypoint[0], img.entrypoint[1:]...)
		r.cmd.Env = img.env(vars)
		r.args = img.entrypoint // for the cleanup's log: not the environment, which holds HF_TOKEN
		r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
		r.cmd.WaitDelay = time.Second
		if err := r.cmd.Start(); err != nil {
			t.Fatalf("starting the image's ENTRYPOINT as uid %d (it must be able to reach %s): %v", img.uid, img.root, err)
		}
		go func() {
			r.err = r.cmd.Wait()
			close(r.done)
		}()
		t.Cleanup(func() { r.cleanup(t) })
		err := r.waitReady(t.Context())
		if err == nil {
			return r
		}
		r.kill()
		if attempt == 2 || !strings.Contains(r.out.String(), "address already in use") {
			t.Fatalf("the image's relay: %v; output:\n%s", err, r.out)
		}
	}
}

// runHealthcheck runs the image's HEALTHCHECK command as the stage's user
// and returns its exit code and output.
func (img *imageTree) runHealthcheck(t *testing.T, vars map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*healthTimeout)
	defer cancel()
	cmd := img.command(ctx, img.healthcheck[0], img.healthcheck[1:]...)
	cmd.Env = img.env(vars)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("HEALTHCHECK: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// testImageBehindProxy runs the image in front of spaceURL with a Space's
// variables, and visitors through the Spaces proxy: the page and the
// module served, metrics off the public port, each visitor's jobs on that
// visitor's latest token for over two token lifetimes, no forged token
// reaching the Space, no token or secret in the relay's log.
func testImageBehindProxy(t *testing.T, img *imageTree, spaceURL string) {
	const secret = "hf_image_test_secret"
	vars := map[string]string{
		"SPACERELAY_UPSTREAM": spaceURL, "SPACERELAY_STATIC": img.path(img.site),
		"SPACERELAY_TOKEN_REFRESH_MARGIN": imageRefreshMargin.String(),
		"SPACERELAY_LOG_LEVEL":            "debug", // the most the log can say: still no token
		"HF_TOKEN":                        secret,
	}
	relay := startImageRelay(t, img, vars)
	if code, out := img.runHealthcheck(t, vars); code != 0 {
		t.Errorf("HEALTHCHECK of the running relay: exit %d, want 0: %s", code, out)
	}
	proxy := startSpacesProxy(t, relay.url, imageTokenTTL)
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	checkSiteThroughProxy(t, ctx, proxy)

	var g errgroup.Group
	visits := make([]*visit15, imageVisitors)
	for i := range visits {
		g.Go(func() error {
			v, err := runVisit(ctx, proxy, fmt.Sprintf("image visitor %d %s", i, randomID()))
			visits[i] = v
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	checkVisits(t, ctx, proxy, spaceURL, visits)
	checkRelayAfterVisits(t, ctx, relay, proxy, visits, secret)

	relay.signal(t, syscall.SIGTERM)
	if code, ok := relay.wait(stopTimeout); !ok || code != 0 {
		t.Errorf("after SIGTERM: exit %d (exited %v), want 0", code, ok)
	}
	if code, out := img.runHealthcheck(t, vars); code != 1 {
		t.Errorf("HEALTHCHECK of a stopped relay: exit %d, want 1: %s", code, out)
	}
}

// checkSiteThroughProxy checks what a browser loads through the proxy: the
// Space's own frontend at /, the module, health; the metrics are not on
// the public port.
func checkSiteThroughProxy(t *testing.T, ctx context.Context, proxy *spacesProxy) {
	t.Helper()
	v, err := openSpace(ctx, proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer v.ws.drop()
	want, err := os.ReadFile(filepath.Join(repoRoot(t), exampleSite, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.get(ctx, "/"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("GET / through the proxy: %v; want %s/index.html (SPACERELAY_STATIC)", err, exampleSite)
	}
	for _, p := range []string{"/spacerelay.js", "/healthz", "/readyz", "/app.js"} {
		if _, err := v.get(ctx, p); err != nil {
			t.Errorf("through the proxy: %v", err)
		}
	}
	if _, err := v.get(ctx, "/metrics"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("GET /metrics on the public port: %v, want 404", err)
	}
}

// A visit15 is what one visitor did: its id, and for each job the digest
// of the token the Space saw and of the token it should have seen.
type visit15 struct {
	id        string
	forged    string
	jobs      []visitJob
	refreshes int
	took      time.Duration
}

type visitJob struct{ prompt, got, want string }

// runVisit opens the Space's page and runs short jobs one after another,
// refreshing as told, until over two token lifetimes have passed and the
// token has been refreshed at least twice.
func runVisit(ctx context.Context, proxy *spacesProxy, name string) (*visit15, error) {
	v, err := openSpace(ctx, proxy.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer v.ws.close()
	out := &visit15{id: v.id, forged: v.forged}
	start := time.Now()
	want := digest(proxy.latest(v.id)) // the upgrade's token
	for i := 0; out.refreshes < 2 || time.Since(start) < 2*imageTokenTTL+time.Second; i++ {
		if v.expiring() {
			if err := v.refreshToken(ctx); err != nil {
				return out, fmt.Errorf("%s, after %d refreshes: %w", name, out.refreshes, err)
			}
			out.refreshes++
			want = digest(proxy.latest(v.id)) // the refresh's token
		}
		prompt := fmt.Sprintf("%s job %d", name, i)
		got, err := v.generate(prompt)
		if err != nil {
			return out, fmt.Errorf("%s, %v into the visit: %w", name, time.Since(start).Round(time.Millisecond), err)
		}
		out.jobs = append(out.jobs, visitJob{prompt: prompt, got: got, want: want})
	}
	out.took = time.Since(start)
	return out, nil
}

// checkVisits checks every job against what the proxy stamped and what the
// Space's journal recorded.
func checkVisits(t *testing.T, ctx context.Context, proxy *spacesProxy, spaceURL string, visits []*visit15) {
	t.Helper()
	stamped, problems := proxy.tokens()
	for _, p := range problems {
		t.Errorf("the proxy forwarded %s", p)
	}
	journal := map[string]string{} // prompt → the token digest of its started entry
	entries, err := allJournal(ctx, spaceURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Event == "started" {
			journal[e.Prompt] = e.Token
		}
	}
	for _, v := range visits {
		forged := digest(v.forged)
		for _, j := range v.jobs {
			if j.got != j.want || journal[j.prompt] != j.want {
				t.Errorf("%s: the Space saw token %s (journal %s), want %s: the visitor's latest", j.prompt, j.got, journal[j.prompt], j.want)
			}
			if j.got == forged || journal[j.prompt] == forged {
				t.Errorf("%s: the visitor's own forged token reached the Space", j.prompt)
			}
		}
		seen := map[string]bool{}
		for _, j := range v.jobs {
			seen[j.want] = true
		}
		if len(seen) < 3 || v.took < 2*imageTokenTTL {
			t.Errorf("visitor %s: %d tokens over %v, want 3 or more over more than two lifetimes (%v)", v.id, len(seen), v.took, 2*imageTokenTTL)
		}
		for other, toks := range stamped {
			for _, tok := range toks {
				if other != v.id && seen[digest(tok)] {
					t.Errorf("visitor %s's job carried a token of visitor %s", v.id, other)
				}
			}
		}
		t.Logf("visitor %s: %d jobs, %d refreshes, %d tokens, %v", v.id, len(v.jobs), v.refreshes, len(seen), v.took.Round(time.Millisecond))
	}
}

func allJournal(ctx context.Context, spaceURL string) ([]journalEntry, error) {
	code, body, err := httpGet(ctx, spaceURL+"/fixture/journal")
	if err != nil || code != 200 {
		return nil, fmt.Errorf("GET /fixture/journal: %d %v", code, err)
	}
	var entries []journalEntry
	return entries, json.Unmarshal(body, &entries)
}

// checkRelayAfterVisits checks the relay's metrics against the visits, and
// that its log holds no token, forged or stamped, and not the secret.
func checkRelayAfterVisits(t *testing.T, ctx context.Context, relay *relayProc, proxy *spacesProxy, visits []*visit15, secret string) {
	t.Helper()
	m, err := relay.metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jobs, refreshes := 0, 0
	for _, v := range visits {
		jobs += len(v.jobs)
		refreshes += v.refreshes
	}
	if got := m["spacerelay_token_refreshes_total"]; int(got) != refreshes {
		t.Errorf("spacerelay_token_refreshes_total %v, want %d (every refresh answered 200)", got, refreshes)
	}
	if got := m["spacerelay_jobs_total"]; int(got) < jobs {
		t.Errorf("spacerelay_jobs_total %v, want at least %d", got, jobs)
	}
	log := relay.out.String()
	stamped, _ := proxy.tokens()
	secrets := []string{secret}
	for _, v := range visits {
		secrets = append(secrets, v.forged)
	}
	for _, toks := range stamped {
		secrets = append(secrets, toks...)
	}
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the relay's log holds a token or the secret (%.12s…)", s)
		}
	}
}
