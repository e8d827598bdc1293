package main

import (
	"archive/zip"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacerelay/spacerelay/web"
)

// TestSpaceTemplateBuild runs the build stage of deploy/huggingface/space's
// Dockerfile as a Space's builder would once this tree is released as
// v{web.Version}: its go install, with its ARG and ENV, resolves the
// module from a Go proxy. The proxy here is a directory holding this tree
// as that release (the build context's files as a module zip) and, for
// the dependencies, this machine's module cache; the module cache the
// build fills is a new one, so no fake release stays behind. The binary
// must be the image's: static, stripped, trimmed, of this version.
func TestSpaceTemplateBuild(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	build := mustParseDockerfile(t, filepath.Join(root, "deploy", "huggingface", "space", "Dockerfile")).stage("build")
	version := build.args["SPACERELAY_VERSION"]
	tmp := t.TempDir()
	proxy := filepath.Join(tmp, "proxy")
	writeModuleProxy(t, root, proxy, version)

	hostCache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	gopath := filepath.Join(tmp, "go") // the golang image's /go
	// No checksum database: the release is made up, and the dependencies
	// come from this machine's module cache, checked against go.sum when
	// they were downloaded (a Space's builder asks sum.golang.org).
	env := append(os.Environ(), "GOPATH="+gopath, "GOBIN=", "GOMODCACHE=", "GOFLAGS=-modcacherw",
		"GOPROXY=file://"+proxy+",file://"+filepath.Join(strings.TrimSpace(string(hostCache)), "cache", "download"),
		"GOSUMDB=off", "GOPRIVATE=", "GONOPROXY=")
	for k, v := range build.args {
		env = append(env, k+"="+v)
	}
	env = append(env, build.env...)
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	start := time.Now()
	for _, run := range build.runs {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", run)
		cmd.Dir = tmp
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", run, err, out)
		}
	}
	t.Logf("the Space's build stage took %v", time.Since(start).Round(time.Millisecond))

	bin := filepath.Join(gopath, "bin", "spacerelay") // COPY --from=build /go/bin/spacerelay
	checkImageBinary(t, bin, tmp)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if want := "spacerelay " + web.Version + "\n"; err != nil || string(out) != want {
		t.Errorf("%s --version: %q, %v; want %q", bin, out, err, want)
	}
}

// writeModuleProxy writes a Go module proxy directory (GOPROXY=file://dir)
// that serves the build context of root as modulePath at version.
func writeModuleProxy(t *testing.T, root, dir, version string) {
	t.Helper()
	at := filepath.Join(dir, filepath.FromSlash(modulePath), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info := `{"Version":"` + version + `","Time":"` + time.Now().UTC().Format(time.RFC3339) + `"}`
	for name, body := range map[string]string{"list": version + "\n", version + ".info": info, version + ".mod": string(gomod)} {
		if err := os.WriteFile(filepath.Join(at, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	patterns := dockerignore(t, root)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		switch {
		case err != nil:
			return err
		case rel != "." && ignored(patterns, filepath.ToSlash(rel)):
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		case !d.Type().IsRegular():
			return nil // directories are implied; a module holds no symlinks
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w, err := zw.Create(modulePath + "@" + version + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatalf("the module zip: %v", err)
	}
}
