package demospace

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// cacheDir is where Gradio keeps generated and uploaded files; our files
// only pretend to live there.
const cacheDir = "/tmp/gradio"

// storedFile is one file kept in memory.
type storedFile struct {
	data    []byte
	name    string // base name, e.g. image.png
	modTime time.Time
}

// fileStore keeps files in memory under Gradio-like paths, dropping the
// least recently used ones beyond maxBytes. Make one with newFileStore.
type fileStore struct {
	maxBytes int64

	mu      sync.Mutex
	files   *lru[string, *storedFile]
	bytes   int64
	renders *lru[[32]byte, string] // rendering key -> path, to skip encoding
}

func newFileStore(maxFiles int, maxBytes int64) *fileStore {
	return &fileStore{maxBytes: maxBytes, files: newLRU[string, *storedFile](maxFiles),
		renders: newLRU[[32]byte, string](maxFiles)}
}

// rendered returns the path of the PNG of an image, encoding and storing
// it only if it is not in memory already.
func (fs *fileStore) rendered(prompt string, width, height, rows int, now time.Time) string {
	key := sha256.Sum256(fmt.Appendf(nil, "%d %d %d %s", width, height, rows, prompt))
	fs.mu.Lock()
	p, ok := fs.renders.get(key)
	if ok {
		_, ok = fs.files.get(p)
	}
	fs.mu.Unlock()
	if ok {
		return p
	}
	p = fs.put("image.png", renderPNG(prompt, width, height, rows), now)
	fs.mu.Lock()
	fs.renders.put(key, p)
	fs.mu.Unlock()
	return p
}

// put stores data as name in a directory named after its sha256, as
// Gradio does, and returns the path.
func (fs *fileStore) put(name string, data []byte, now time.Time) string {
	sum := sha256.Sum256(data)
	p := cacheDir + "/" + hex.EncodeToString(sum[:]) + "/" + name
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if old, ok := fs.files.peek(p); ok {
		fs.bytes -= int64(len(old.data))
	}
	fs.bytes += int64(len(data))
	if old, evicted := fs.files.put(p, &storedFile{data: data, name: name, modTime: now}); evicted {
		fs.bytes -= int64(len(old.val.data))
	}
	for fs.bytes > fs.maxBytes && fs.files.len() > 1 {
		old, _ := fs.files.removeOldest()
		fs.bytes -= int64(len(old.val.data))
	}
	return p
}

func (fs *fileStore) get(p string) (*storedFile, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.files.get(p)
}

// safeTypes are the MIME types Gradio serves inline; others are sent as
// attachments of type application/octet-stream.
var safeTypes = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true,
	"audio/mpeg": true, "audio/wav": true, "audio/ogg": true, "audio/webm": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true,
	"text/plain": true, "application/json": true,
}

// serveFile answers GET|HEAD {P}/file=<path>: 403 {"detail":"File not
// allowed: <path>."} unless the path is one of ours. Ranges are supported.
func (fs *fileStore) serveFile(w http.ResponseWriter, r *http.Request, p string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w)
		return
	}
	clean := path.Clean(p)
	f, ok := fs.get(clean)
	if !ok {
		writeDetail(w, http.StatusForbidden, "File not allowed: "+p+".")
		return
	}
	typ, _, _ := strings.Cut(mime.TypeByExtension(path.Ext(f.name)), ";")
	disposition := "inline"
	if !safeTypes[typ] {
		typ, disposition = "application/octet-stream", "attachment"
	}
	if strings.HasPrefix(typ, "text/") {
		typ += "; charset=utf-8"
	}
	h := w.Header()
	h.Set("Content-Type", typ)
	h.Set("Content-Disposition", fmt.Sprintf("%s; filename=%q", disposition, f.name))
	h.Set("Etag", `"`+path.Base(path.Dir(clean))+`"`)
	http.ServeContent(w, r, f.name, f.modTime, bytes.NewReader(f.data))
}

// errTooLarge reports an upload over the size limit.
var errTooLarge = errors.New("demospace: upload too large")

// serveUpload answers POST {P}/upload: every multipart part named "files"
// is stored, and the JSON array of their paths is returned. A part over
// maxSize bytes gives 413 with Gradio's text.
func (fs *fileStore) serveUpload(w http.ResponseWriter, r *http.Request, maxSize int64, now time.Time) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w)
		return
	}
	typ, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || typ != "multipart/form-data" || params["boundary"] == "" {
		writeDetail(w, http.StatusBadRequest, "Invalid content type.")
		return
	}
	paths, err := fs.readParts(multipart.NewReader(r.Body, params["boundary"]), maxSize, now)
	switch {
	case errors.Is(err, errTooLarge):
		writeText(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("File size exceeded maximum allowed size of %d bytes.", maxSize))
	case err != nil:
		writeText(w, http.StatusBadRequest, "There was an error parsing the body")
	default:
		writeJSON(w, http.StatusOK, paths)
	}
}

// maxParts bounds the parts of one upload, as Gradio's max_files.
const maxParts = 1000

func (fs *fileStore) readParts(mr *multipart.Reader, maxSize int64, now time.Time) ([]string, error) {
	paths := []string{}
	for range maxParts {
		part, err := mr.NextPart()
		if err == io.EOF {
			return paths, nil
		}
		if err != nil {
			return nil, err
		}
		if part.FormName() != "files" {
			// Other fields are read and ignored, within the same bound.
			if _, err := io.Copy(io.Discard, io.LimitReader(part, maxSize)); err != nil {
				return nil, err
			}
			continue
		}
		data, err := io.ReadAll(io.LimitReader(part, maxSize+1))
		if err != nil {
			return nil, err
		}
		if int64(len(data)) > maxSize {
			return nil, errTooLarge
		}
		paths = append(paths, fs.put(uploadName(part.FileName()), data, now))
	}
	return nil, errors.New("demospace: too many parts")
}

// uploadName sanitises a client's file name roughly as Gradio does.
func uploadName(name string) string {
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`<>:"/\|?*`+"`$!{}", r) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimRight(name, " .")
	if name == "" || name == "." || name == ".." {
		return "file"
	}
	for len(name) > 200 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}
