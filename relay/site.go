package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// siteHandler serves Server.Site, the page developer's own frontend. The
// Server's mux sends it every GET that no route of the Server's own takes.
type siteHandler struct {
	fsys  fs.FS
	spa   bool
	etags etagCache
}

func newSiteHandler(fsys fs.FS, spa bool) *siteHandler {
	return &siteHandler{fsys: fsys, spa: spa, etags: etagCache{m: make(map[string]etagEntry)}}
}

var errIsDir = errors.New("a directory")

func (h *siteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/v1" || strings.HasPrefix(p, "/v1/") { // the relay's, whatever Site holds
		http.NotFound(w, r)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" || strings.HasSuffix(p, "/") {
		name = path.Join(name, "index.html")
	}
	if !fs.ValidPath(name) || hidden(name) {
		http.NotFound(w, r)
		return
	}
	err := h.serveFile(w, r, name)
	switch {
	case err == nil:
		return
	case errors.Is(err, errIsDir) && h.exists(path.Join(name, "index.html")):
		http.Redirect(w, r, "/"+name+"/", http.StatusMovedPermanently)
		return
	case errors.Is(err, errIsDir), errors.Is(err, fs.ErrNotExist):
		if h.spa && h.serveFile(w, r, "index.html") == nil {
			return
		}
	}
	http.NotFound(w, r) // a file that cannot be read (a symlink out of Site) too
}

// hidden reports whether a path element of name starts with a dot.
func hidden(name string) bool {
	for elem := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(elem, ".") {
			return true
		}
	}
	return false
}

func (h *siteHandler) exists(name string) bool {
	fi, err := fs.Stat(h.fsys, name)
	return err == nil && fi.Mode().IsRegular()
}

// serveFile serves the regular file name, or returns why not without
// writing anything.
func (h *siteHandler) serveFile(w http.ResponseWriter, r *http.Request, name string) error {
	f, err := h.fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return err
	case fi.IsDir():
		return errIsDir
	case !fi.Mode().IsRegular():
		return fs.ErrNotExist
	}
	content, ok := f.(io.ReadSeeker)
	if !ok { // os.Root's and embed's files seek; a bare fs.File is read whole
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		content = bytes.NewReader(b)
	}
	tag, err := h.etags.get(name, fi, content)
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("ETag", tag)
	hd.Set("Cache-Control", cacheControl(name))
	hd.Set("X-Content-Type-Options", "nosniff")
	if ct, ok := siteTypes[path.Ext(name)]; ok {
		hd.Set("Content-Type", ct)
	}
	http.ServeContent(w, r, name, fi.ModTime(), content) // If-None-Match, Range, HEAD
	return nil
}

// siteTypes are the MIME types of a built frontend's usual files, the same
// on every system (ServeContent asks package mime for the others).
var siteTypes = map[string]string{
	".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
	".json": "application/json", ".map": "application/json",
	".webmanifest": "application/manifest+json", ".wasm": "application/wasm",
	".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
	".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
	".avif": "image/avif", ".ico": "image/vnd.microsoft.icon", ".woff2": "font/woff2",
	".woff": "font/woff", ".ttf": "font/ttf", ".otf": "font/otf", ".mp3": "audio/mpeg",
	".wav": "audio/wav", ".ogg": "audio/ogg", ".mp4": "video/mp4", ".webm": "video/webm",
	".glb": "model/gltf-binary",
}

// cacheControl lets a browser keep a file with a hashed name for a year
// without asking again: a new build gives new content a new name. Every
// other file (index.html above all) is checked at each use (no-cache:
// with its ETag, a 304 when it has not changed).
func cacheControl(name string) string {
	if hashedName(path.Base(name)) {
		return "public, max-age=31536000, immutable"
	}
	return "no-cache"
}

// hashedName reports whether a file name carries a build tool's content
// hash: a part between dots or dashes, after the first and before the
// extension, of 8 or more letters, digits and underscores with at least
// one digit and one letter (app.3f9c2b1e.js, index-BQ1x8nqp.css,
// main.5b7e9c0d.chunk.js). A hash that does not look so (all digits, or
// with a dash inside) is only cached less.
func hashedName(base string) bool {
	parts := strings.FieldsFunc(base, func(r rune) bool { return r == '.' || r == '-' })
	if len(parts) < 3 {
		return false
	}
	for _, p := range parts[1 : len(parts)-1] {
		if len(p) >= 8 && looksLikeHash(p) {
			return true
		}
	}
	return false
}

func looksLikeHash(s string) bool {
	var digit, letter bool
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		case c != '_':
			return false
		}
	}
	return digit && letter
}

// etagCache keeps the ETag of each file served, a hash of its content, by
// name, size and modification time: a file is hashed once, not at every
// request. It holds at most maxETags entries, and starts over when full.
type etagCache struct {
	mu sync.Mutex // guards m, nothing else
	m  map[string]etagEntry
}

type etagEntry struct {
	size int64
	mod  time.Time
	tag  string
}

const maxETags = 4096

// get returns the ETag of file name, which fi describes and content
// reads; content is left at its start.
func (c *etagCache) get(name string, fi fs.FileInfo, content io.ReadSeeker) (string, error) {
	c.mu.Lock()
	e, ok := c.m[name]
	c.mu.Unlock()
	if ok && e.size == fi.Size() && e.mod.Equal(fi.ModTime()) {
		return e.tag, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, content); err != nil {
		return "", fmt.Errorf("etag: %w", err)
	}
	if _, err := content.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("etag: %w", err)
	}
	tag := `"` + base64.RawURLEncoding.EncodeToString(sum.Sum(nil)[:16]) + `"`
	c.mu.Lock()
	if len(c.m) >= maxETags {
		clear(c.m)
	}
	c.m[name] = etagEntry{fi.Size(), fi.ModTime(), tag}
	c.mu.Unlock()
	return tag, nil
}
