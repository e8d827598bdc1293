package web

import (
	"encoding/json"
	"io/fs"
	"os"
	"regexp"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// semver is a version as npm takes it: MAJOR.MINOR.PATCH, with an
// optional pre-release.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$`)

func TestVersion(t *testing.T) {
	if !semver.MatchString(Version) {
		t.Fatalf("Version = %q, want a semantic version", Version)
	}
	// The lock file npm writes must agree, or npm ci refuses it.
	b, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Version  string `json:"version"`
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatalf("package-lock.json: %v", err)
	}
	if lock.Version != Version || lock.Packages[""].Version != Version {
		t.Errorf("package-lock.json version = %q (root package %q), want %q as in package.json", lock.Version, lock.Packages[""].Version, Version)
	}
}

func TestVersionErrors(t *testing.T) {
	for _, b := range []string{``, `{`, `{}`, `{"version":""}`, `{"version":3}`} {
		if v, err := version([]byte(b)); err == nil {
			t.Errorf("version(%q) = %q, want an error", b, v)
		}
	}
	if v, err := version([]byte(`{"name":"spacerelay","version":"1.2.3"}`)); err != nil || v != "1.2.3" {
		t.Errorf(`version(…"1.2.3"…) = %q, %v`, v, err)
	}
}

func TestFS(t *testing.T) {
	for _, name := range []string{"index.html", "spacerelay.js", "spacerelay.d.ts"} {
		if _, err := fs.Stat(FS, name); err != nil {
			t.Errorf("FS: %v", err)
		}
	}
}
