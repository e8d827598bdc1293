package main

// Issue 15: the Dockerfile, the Space template's Dockerfile and README, and
// the Taskfile's build task, read as the tests need them, and what the
// image's build must make. Nothing here runs a container:
// e2e_image_test.go and e2e_template_test.go build and run what these
// files say.

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spacerelay/spacerelay/web"
)

// A dockerfile is what the tests read of a Dockerfile: its stages, in order.
// It knows the instructions spacerelay's Dockerfiles use, and refuses the
// rest rather than misread them.
type dockerfile struct {
	stages []*stage
}

// A stage is one FROM and what follows it.
type stage struct {
	from, name  string
	args        map[string]string // ARG name[=default]
	env         []string          // ENV, as KEY=value, in order
	workdir     string
	copies      [][]string // each COPY's words
	runs        []string   // RUN's shell commands
	user        string
	expose      string
	healthOpts  []string // HEALTHCHECK's --options
	healthcheck []string // its CMD, exec form
	entrypoint  []string // exec form
}

func parseDockerfile(file string) (*dockerfile, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	df := &dockerfile{}
	for _, line := range logicalLines(string(b)) {
		word, rest, _ := strings.Cut(line, " ")
		if err := df.add(strings.ToUpper(word), strings.TrimSpace(rest)); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, line, err)
		}
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", file)
	}
	return df, nil
}

// logicalLines joins continued lines and drops comments and blank lines.
func logicalLines(text string) []string {
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	return lines
}

func (df *dockerfile) add(instr, rest string) error {
	if instr == "FROM" {
		from, name, _ := strings.Cut(rest, " ")
		if as, ok := strings.CutPrefix(strings.TrimSpace(name), "AS "); ok {
			name = strings.TrimSpace(as)
		}
		df.stages = append(df.stages, &stage{from: from, name: name, args: map[string]string{}})
		return nil
	}
	if len(df.stages) == 0 {
		return errors.New("before the first FROM")
	}
	s := df.stages[len(df.stages)-1]
	if instr != "RUN" && strings.Contains(rest, "$") {
		return errors.New("variables are not expanded by this reader")
	}
	var err error
	switch instr {
	case "ARG":
		k, v, _ := strings.Cut(rest, "=")
		s.args[k] = v
	case "ENV":
		err = s.addEnv(rest)
	case "WORKDIR":
		s.workdir = rest
	case "COPY":
		s.copies = append(s.copies, strings.Fields(rest))
	case "RUN":
		s.runs = append(s.runs, rest)
	case "USER":
		s.user = rest
	case "EXPOSE":
		s.expose = rest
	case "HEALTHCHECK":
		err = s.addHealthcheck(rest)
	case "ENTRYPOINT":
		err = execForm(rest, &s.entrypoint)
	default:
		err = errors.New("an instruction this reader does not know")
	}
	return err
}

// addEnv reads ENV KEY=value [KEY=value…], without quotes.
func (s *stage) addEnv(rest string) error {
	for _, kv := range strings.Fields(rest) {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(kv, `"'`) {
			return fmt.Errorf("ENV %q: want KEY=value, unquoted", kv)
		}
		s.env = append(s.env, kv)
	}
	return nil
}

func (s *stage) addHealthcheck(rest string) error {
	for strings.HasPrefix(rest, "--") {
		opt, after, _ := strings.Cut(rest, " ")
		s.healthOpts = append(s.healthOpts, opt)
		rest = strings.TrimSpace(after)
	}
	cmd, ok := strings.CutPrefix(rest, "CMD ")
	if !ok {
		return errors.New("HEALTHCHECK without CMD")
	}
	return execForm(cmd, &s.healthcheck)
}

// execForm reads a JSON array of strings: a distroless image has no shell
// to run the shell form.
func execForm(s string, dst *[]string) error {
	if err := json.Unmarshal([]byte(s), dst); err != nil || len(*dst) == 0 {
		return fmt.Errorf("want the exec form, a JSON array of strings: %v", err)
	}
	return nil
}

// stage returns the stage named name, or nil.
func (df *dockerfile) stage(name string) *stage {
	for _, s := range df.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (df *dockerfile) final() *stage { return df.stages[len(df.stages)-1] }

// envValue is the value of ENV key in s, or "".
func (s *stage) envValue(key string) string {
	for _, kv := range s.env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// goRun returns the RUN of s whose command starts with "go "+verb.
func (s *stage) goRun(verb string) string {
	for _, r := range s.runs {
		if strings.HasPrefix(r, "go "+verb+" ") {
			return r
		}
	}
	return ""
}

// buildFlags returns the flags of a go build or go install command line,
// without -o and its value, in order.
func buildFlags(cmd string) []string {
	var flags []string
	words := strings.Fields(cmd)
	for i := 2; i < len(words); i++ {
		switch w := words[i]; {
		case w == "-o":
			i++
		case strings.HasPrefix(w, "-ldflags="):
			// -ldflags="-s -w" is one shell word of three fields.
			for !strings.HasSuffix(w, `"`) || w == `-ldflags="` {
				i++
				w += " " + words[i]
			}
			flags = append(flags, w)
		case strings.HasPrefix(w, "-"):
			flags = append(flags, w)
		}
	}
	return flags
}

// outputFlag is the value of -o in a go build command line, or "".
func outputFlag(cmd string) string {
	words := strings.Fields(cmd)
	if i := slices.Index(words, "-o"); i >= 0 && i+1 < len(words) {
		return words[i+1]
	}
	return ""
}

// repoRoot is the repository's root, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func mustParseDockerfile(t testing.TB, file string) *dockerfile {
	t.Helper()
	df, err := parseDockerfile(file)
	if err != nil {
		t.Fatal(err)
	}
	return df
}

// goModVersion is the go directive of go.mod, such as "1.26.4".
func goModVersion(t testing.TB, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "go "); ok {
			return v
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}

// The build every image makes: these flags, and cgo off.
var imageBuildFlags = []string{"-trimpath", "-buildvcs=false", `-ldflags="-s -w"`}

// TestDockerfile checks what issue 15 asks of the image: a build stage on
// the official Go image of go.mod's version, a static, stripped binary
// with trimmed paths, and a distroless last stage run as uid 1000 on port
// 7860, configured by SPACERELAY_* variables only, with a HEALTHCHECK the
// binary answers itself. The Taskfile's build task must run the same
// command.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	df := mustParseDockerfile(t, filepath.Join(root, "Dockerfile"))
	build := df.stage("build")
	if build == nil {
		t.Fatal("Dockerfile: no stage named build")
	}
	if want := "golang:" + goModVersion(t, root); build.from != want {
		t.Errorf("build stage FROM %s, want %s (go.mod's go version)", build.from, want)
	}
	cmd := build.goRun("build")
	if got := buildFlags(cmd); !slices.Equal(got, imageBuildFlags) {
		t.Errorf("build command %q has flags %q, want %q", cmd, got, imageBuildFlags)
	}
	if build.envValue("CGO_ENABLED") != "0" {
		t.Errorf("build stage ENV %q, want CGO_ENABLED=0", build.env)
	}
	// The last stage copies what the build wrote: -o, from WORKDIR.
	checkRuntimeStage(t, "Dockerfile", df.final(), path.Join(build.workdir, outputFlag(cmd)))

	task, err := os.ReadFile(filepath.Join(root, "Taskfile.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(task), "      - "+cmd+"\n") || !strings.Contains(string(task), `CGO_ENABLED: "0"`) {
		t.Errorf("Taskfile.yml: no task runs the Dockerfile's build command %q with CGO_ENABLED \"0\"", cmd)
	}
}

// checkRuntimeStage checks the last stage of an image (file names it).
// binary is the build stage's path of the binary it copies.
func checkRuntimeStage(t *testing.T, file string, s *stage, binary string) {
	t.Helper()
	if !strings.HasPrefix(s.from, "gcr.io/distroless/static") {
		t.Errorf("%s: last stage FROM %s, want a distroless static image", file, s.from)
	}
	if s.user != "1000:1000" {
		t.Errorf("%s: USER %q, want 1000:1000 (a Space's uid)", file, s.user)
	}
	if _, port, _ := strings.Cut(s.envValue("SPACERELAY_LISTEN"), ":"); port != "7860" || s.expose != "7860" {
		t.Errorf("%s: SPACERELAY_LISTEN %q, EXPOSE %q; want port 7860 on every interface", file, s.envValue("SPACERELAY_LISTEN"), s.expose)
	}
	for _, kv := range s.env {
		if !strings.HasPrefix(kv, "SPACERELAY_") {
			t.Errorf("%s: ENV %s: the relay is configured by SPACERELAY_* variables only (and HF_TOKEN, a secret, never in the image)", file, kv)
		}
	}
	if len(s.entrypoint) != 1 || !path.IsAbs(s.entrypoint[0]) {
		t.Fatalf("%s: ENTRYPOINT %q, want the binary's absolute path alone", file, s.entrypoint)
	}
	if want := []string{s.entrypoint[0], "--healthcheck"}; !slices.Equal(s.healthcheck, want) {
		t.Errorf("%s: HEALTHCHECK CMD %q, want %q", file, s.healthcheck, want)
	}
	if want := []string{"--from=build", binary, s.entrypoint[0]}; len(s.copies) == 0 || !slices.Equal(s.copies[0], want) {
		t.Errorf("%s: last stage COPY %q, want first %q", file, s.copies, want)
	}
}

// TestSpaceTemplate checks deploy/huggingface/space: its README's front
// matter makes a Docker Space on the image's port; its Dockerfile builds
// the release of web.Version with the image's flags and ends in the same
// last stage as the repository's Dockerfile.
func TestSpaceTemplate(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dir := filepath.Join(root, "deploy", "huggingface", "space")
	fm := frontMatter(t, filepath.Join(dir, "README.md"))
	for k, want := range map[string]string{"sdk": "docker", "app_port": "7860"} {
		if fm[k] != want {
			t.Errorf("space/README.md front matter %s: %q, want %q", k, fm[k], want)
		}
	}
	for _, k := range []string{"title", "emoji", "colorFrom", "colorTo", "short_description"} {
		if fm[k] == "" {
			t.Errorf("space/README.md front matter has no %s", k)
		}
	}
	if n := len([]rune(fm["short_description"])); n > 60 {
		t.Errorf("short_description has %d characters; the Hub takes 60 at most", n)
	}

	tmpl := mustParseDockerfile(t, filepath.Join(dir, "Dockerfile"))
	build := tmpl.stage("build")
	if build == nil {
		t.Fatal("space/Dockerfile: no stage named build")
	}
	if want := "golang:" + goModVersion(t, root); build.from != want {
		t.Errorf("space/Dockerfile: build stage FROM %s, want %s", build.from, want)
	}
	if want := "v" + web.Version; build.args["SPACERELAY_VERSION"] != want {
		t.Errorf("space/Dockerfile: ARG SPACERELAY_VERSION=%s, want %s (web.Version: the release this tree becomes)", build.args["SPACERELAY_VERSION"], want)
	}
	install := build.goRun("install")
	if got := buildFlags(install); !slices.Equal(got, imageBuildFlags) || build.envValue("CGO_ENABLED") != "0" {
		t.Errorf("space/Dockerfile: %q with ENV %q, want flags %q and CGO_ENABLED=0", install, build.env, imageBuildFlags)
	}
	if want := modulePath + "/cmd/spacerelay@${SPACERELAY_VERSION}"; !strings.HasSuffix(install, " "+want) {
		t.Errorf("space/Dockerfile: %q does not install %s", install, want)
	}
	checkRuntimeStage(t, "space/Dockerfile", tmpl.final(), "/go/bin/spacerelay")
	img := mustParseDockerfile(t, filepath.Join(root, "Dockerfile")).final()
	got, want := tmpl.final(), img
	if got.from != want.from || !slices.Equal(got.env, want.env) || !slices.Equal(got.healthOpts, want.healthOpts) {
		t.Errorf("space/Dockerfile's last stage (FROM %s, ENV %q, HEALTHCHECK %q) differs from the Dockerfile's (FROM %s, ENV %q, HEALTHCHECK %q)",
			got.from, got.env, got.healthOpts, want.from, want.env, want.healthOpts)
	}
}

// modulePath is the module's path, as go.mod says and a Space installs it.
const modulePath = "github.com/spacerelay/spacerelay"

// frontMatter reads the key: value lines between a README's --- lines.
func frontMatter(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	body, ok := strings.CutPrefix(string(b), "---\n")
	block, _, closed := strings.Cut(body, "\n---\n")
	if !ok || !closed {
		t.Fatalf("%s does not start with a --- front matter block", file)
	}
	fm := map[string]string{}
	for l := range strings.Lines(block) {
		k, v, _ := strings.Cut(l, ":")
		fm[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return fm
}

// checkImageBinary checks what the build flags promise.
func checkImageBinary(t *testing.T, bin, src string) {
	t.Helper()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// (With -trimpath, Go records no -ldflags: the ELF shows them below.)
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != want {
			t.Errorf("the binary's build setting %s = %q, want %q", k, settings[k], want)
		}
	}
	if info.Path != modulePath+"/cmd/spacerelay" {
		t.Errorf("the binary's package is %q", info.Path)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: not static", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: not stripped (-s)")
	}
	if f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil {
		t.Error("the binary has DWARF: not built with -w")
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(src)) {
		t.Errorf("the binary holds the build directory %s: paths not trimmed", src)
	}
}

// copyContext copies root to dst, leaving out what .dockerignore names,
// as the build context reaches the builder. Patterns are Docker's: paths
// from the root, path.Match in each segment, ** for any number of them,
// and a match of a directory leaves out what it holds.
func copyContext(t *testing.T, root, dst string) {
	t.Helper()
	patterns := dockerignore(t, root)
	skip := func(rel string) bool { return ignored(patterns, rel) }
	if err := copyTree(root, dst, skip); err != nil {
		t.Fatalf("copying the build context: %v", err)
	}
}

// copyTree copies the files, directories and symlinks below root to dst,
// leaving out those whose slash-separated path from root skip names.
func copyTree(root, dst string, skip func(rel string) bool) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel != "." && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, to)
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		}
		return copyFile(p, to, 0)
	})
}

func dockerignore(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for l := range strings.Lines(string(b)) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: %q: exceptions are not read by this test", l)
		}
		patterns = append(patterns, path.Clean(strings.Trim(l, "/")))
	}
	return patterns
}

func ignored(patterns []string, rel string) bool {
	for _, p := range patterns {
		if matchSegments(strings.Split(p, "/"), strings.Split(rel, "/")) {
			return true
		}
	}
	return false
}

func matchSegments(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if matchSegments(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, _ := path.Match(pat[0], name[0])
	return ok && matchSegments(pat[1:], name[1:])
}

// copyFile copies a file; mode 0 keeps the source's.
func copyFile(from, to string, mode fs.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if mode == 0 {
		fi, err := os.Stat(from)
		if err != nil {
			return err
		}
		mode = fi.Mode().Perm()
	}
	return os.WriteFile(to, b, mode)
}
