package relay_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacerelay/spacerelay/relay"
)

// siteDir writes a built frontend into a temporary directory, beside a
// secret outside it, and returns the directory.
func siteDir(t *testing.T) string {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "site")
	files := map[string]string{
		"index.html":                    "<!doctype html><title>my app</title>",
		"assets/app.3f9c2b1e.js":        "console.log('app')",
		"assets/index-BQ1x8nqp.css":     "body{}",
		"assets/main.5b7e9c0d.chunk.js": "chunk",
		"style.css":                     "p{}",
		"logo.svg":                      "<svg/>",
		"font.woff2":                    "wOF2",
		"app.wasm":                      "\x00asm",
		"docs/index.html":               "<title>docs</title>",
		"empty/.keep":                   "",
		".env":                          "SECRET=1",
		".git/config":                   "[core]",
		"spacerelay.js":                 "not the relay's module",
		"healthz":                       "not the relay's health",
		"readyz":                        "not the relay's readiness",
		"metrics":                       "not the relay's metrics",
		"v1/ws":                         "not the relay's socket",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(top, "secret.txt"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"out.txt": "../secret.txt", "in.css": "style.css"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startSite serves dir as the Server's Site, through an os.Root as
// cmd/spacerelay does.
func startSite(t *testing.T, dir string, spa, metricsPublic bool) string {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return start(t, &relay.Server{Static: testStatic, Site: root.FS(), SPA: spa, MetricsPublic: metricsPublic})
}

func TestSite(t *testing.T) {
	t.Parallel()
	dir := siteDir(t)
	plain, spa := startSite(t, dir, false, false), startSite(t, dir, true, true)
	const immutable, noCache = "public, max-age=31536000, immutable", "no-cache"
	tests := []struct {
		base, path  string
		status      int
		contentType string // prefix
		cache       string
		body        string // substring
	}{
		{plain, "/", 200, "text/html", noCache, "<title>my app</title>"},
		{plain, "/index.html", 200, "text/html", noCache, "<title>my app</title>"},
		{plain, "/assets/app.3f9c2b1e.js", 200, "text/javascript", immutable, "console.log"},
		{plain, "/assets/index-BQ1x8nqp.css", 200, "text/css", immutable, "body{}"},
		{plain, "/assets/main.5b7e9c0d.chunk.js", 200, "text/javascript", immutable, "chunk"},
		{plain, "/style.css", 200, "text/css", noCache, "p{}"},
		{plain, "/logo.svg", 200, "image/svg+xml", noCache, "<svg/>"},
		{plain, "/font.woff2", 200, "font/woff2", noCache, "wOF2"},
		{plain, "/app.wasm", 200, "application/wasm", noCache, "asm"},
		{plain, "/docs/", 200, "text/html", noCache, "<title>docs</title>"},
		{plain, "/docs", 200, "text/html", noCache, "<title>docs</title>"}, // redirected to /docs/
		{plain, "/in.css", 200, "text/css", noCache, "p{}"},                // a symlink inside
		{plain, "/empty/", 404, "", "", ""},                                // no listing
		{plain, "/assets/", 404, "", "", ""},
		{plain, "/out.txt", 404, "", "", ""}, // a symlink out of the directory
		{plain, "/.env", 404, "", "", ""},
		{plain, "/.git/config", 404, "", "", ""},
		{plain, "/empty/.keep", 404, "", "", ""},
		{plain, "/nothing", 404, "", "", ""},
		{plain, "/spacerelay.js", 200, "text/javascript", "", "export function connect"}, // the relay's routes win
		{plain, "/healthz", 200, "text/plain", "", "ok"},
		{plain, "/readyz", 200, "application/json", "no-store", `"ready":true`},
		{plain, "/metrics", 200, "", noCache, "not the relay's metrics"}, // /metrics is not the relay's here
		{plain, "/v1/ws", 426, "application/json", "no-store", "upgrade_required"},
		{plain, "/v1/other", 404, "", "", ""},
		{spa, "/some/client/route", 200, "text/html", noCache, "<title>my app</title>"},
		{spa, "/assets/gone.1a2b3c4d.js", 200, "text/html", noCache, "<title>my app</title>"},
		{spa, "/empty/", 200, "text/html", noCache, "<title>my app</title>"},
		{spa, "/v1/other", 404, "", "", ""},
		{spa, "/v1", 404, "", "", ""},
		{spa, "/.env", 404, "", "", ""},
		{spa, "/out.txt", 404, "", "", ""},
		{spa, "/metrics", 200, "text/plain", "", "spacerelay_sessions_open"}, // MetricsPublic
	}
	for _, tt := range tests {
		name := map[string]string{plain: "", spa: " (spa)"}[tt.base]
		r := get(t, tt.base+tt.path)
		if r.StatusCode != tt.status {
			t.Errorf("GET %s%s = %d, want %d", tt.path, name, r.StatusCode, tt.status)
			continue
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
			t.Errorf("GET %s%s: Content-Type %q, want %q…", tt.path, name, ct, tt.contentType)
		}
		if cc := r.Header.Get("Cache-Control"); cc != tt.cache && tt.status == 200 {
			t.Errorf("GET %s%s: Cache-Control %q, want %q", tt.path, name, cc, tt.cache)
		}
		if !strings.Contains(string(r.body), tt.body) {
			t.Errorf("GET %s%s = %q, want it to contain %q", tt.path, name, r.body, tt.body)
		}
		if strings.Contains(string(r.body), "outside") || strings.Contains(string(r.body), "SECRET") {
			t.Errorf("GET %s%s = %q: a file it must not serve", tt.path, name, r.body)
		}
	}
}

// TestSiteETag checks ETag and If-None-Match, and that the ETag follows the
// file's content.
func TestSiteETag(t *testing.T) {
	t.Parallel()
	dir := siteDir(t)
	base := startSite(t, dir, true, false)
	for _, path := range []string{"/", "/assets/app.3f9c2b1e.js", "/client/route"} {
		r := get(t, base+path)
		tag := r.Header.Get("ETag")
		if !strings.HasPrefix(tag, `"`) || len(tag) < 10 {
			t.Fatalf("GET %s: ETag %q, want a strong one", path, tag)
		}
		again := request(t, http.MethodGet, base+path, http.Header{"If-None-Match": {tag}})
		if again.StatusCode != http.StatusNotModified || len(again.body) != 0 {
			t.Errorf("GET %s with If-None-Match %s = %d %q, want 304 and no body", path, tag, again.StatusCode, again.body)
		}
		if cc := again.Header.Get("Cache-Control"); cc == "" {
			t.Errorf("GET %s: 304 without Cache-Control", path)
		}
	}
	before := get(t, base+"/style.css").Header.Get("ETag")
	if err := os.WriteFile(filepath.Join(dir, "style.css"), []byte("p{color:red}"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := request(t, http.MethodGet, base+"/style.css", http.Header{"If-None-Match": {before}})
	if r.StatusCode != http.StatusOK || string(r.body) != "p{color:red}" || r.Header.Get("ETag") == before {
		t.Errorf("after a change: %d %q ETag %s, want 200 with the new content and a new ETag", r.StatusCode, r.body, r.Header.Get("ETag"))
	}
}
