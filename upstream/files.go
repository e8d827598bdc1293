package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// FileData is a file in a job's outputs or inputs: Gradio's FileData.
type FileData struct {
	Path     string // the file's path on the upstream server, or a URL
	URL      string // where the upstream says it can be fetched, if it says
	OrigName string // the file's name for people, if known
	MimeType string // if the upstream knows it
	Size     int64  // in bytes, -1 if unknown
	IsStream bool   // a live media stream (HLS), not a file
}

// Name returns the file's name for people: OrigName, else the last
// element of Path.
func (f FileData) Name() string {
	if f.OrigName != "" {
		return f.OrigName
	}
	return path.Base(strings.TrimRight(f.Path, "/"))
}

// AsFile reports whether v, a decoded JSON value of an output, is a Gradio
// FileData object, and returns it.
func AsFile(v any) (FileData, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return FileData{}, false
	}
	meta, _ := m["meta"].(map[string]any)
	p, _ := m["path"].(string)
	if meta["_type"] != "gradio.FileData" || p == "" {
		return FileData{}, false
	}
	f := FileData{Path: p, Size: -1}
	f.URL, _ = m["url"].(string)
	f.OrigName, _ = m["orig_name"].(string)
	f.MimeType, _ = m["mime_type"].(string)
	f.IsStream, _ = m["is_stream"].(bool)
	if n, ok := m["size"].(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			f.Size = i
		}
	}
	return f, true
}

// Download is an open output file.
type Download struct {
	Body io.ReadCloser // at most the limit's bytes; reading more fails
	Name string
	MIME string
	Size int64 // -1 if unknown
}

// Download opens an output file of a job, with the Client's credentials
// and cookies. A file known to be larger than limit bytes gives
// CodeFileTooLarge at once; one that turns out larger fails while reading.
// limit <= 0 means no limit. The caller closes Body.
func (c *Client) Download(ctx context.Context, f FileData, limit int64) (*Download, error) {
	if f.IsStream {
		return nil, &Error{Code: CodeUnavailable, Message: "file " + f.Name() + " is a live stream, which spacerelay does not relay"}
	}
	if limit > 0 && f.Size > limit {
		return nil, tooLarge(f.Name(), f.Size, limit)
	}
	api, err := c.API(ctx)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(api.BaseURL + api.Prefix + "/file=")
	if err != nil {
		return nil, fmt.Errorf("upstream: download: %w", err)
	}
	u.Path += f.Path // the path is the upstream's own: fetched through it, never directly
	// A body that stops coming for the stream idle limit is broken.
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(c.cfg.StreamIdleTimeout, cancel)
	stop := func() { timer.Stop(); cancel() }
	req, err := c.request(ctx, http.MethodGet, u.String(), nil, nil)
	if err != nil {
		stop()
		return nil, err
	}
	resp, err := c.do(req, "download "+f.Name())
	if err != nil {
		stop()
		return nil, err
	}
	d := &Download{Name: f.Name(), Size: resp.ContentLength, MIME: fileMIME(resp.Header.Get("Content-Type"), f)}
	if limit > 0 && d.Size > limit {
		resp.Body.Close()
		stop()
		return nil, tooLarge(d.Name, d.Size, limit)
	}
	var body io.Reader = &idleReader{r: resp.Body, t: timer, d: c.cfg.StreamIdleTimeout}
	if limit > 0 {
		body = &limitedReader{r: body, left: limit, name: d.Name, limit: limit}
	}
	d.Body = &downloadBody{Reader: body, close: func() error { stop(); return resp.Body.Close() }}
	return d, nil
}

type downloadBody struct {
	io.Reader
	close func() error
}

func (b *downloadBody) Close() error { return b.close() }

func fileMIME(header string, f FileData) string {
	if t, _, err := mime.ParseMediaType(header); err == nil && t != "application/octet-stream" {
		return t
	}
	if f.MimeType != "" {
		return f.MimeType
	}
	if t := mime.TypeByExtension(path.Ext(f.Name())); t != "" {
		t, _, _ = strings.Cut(t, ";")
		return t
	}
	return "application/octet-stream"
}

func tooLarge(name string, size, limit int64) *Error {
	return &Error{Code: CodeFileTooLarge, Message: fmt.Sprintf("file %s is %d bytes, over the limit of %d", name, size, limit)}
}

// limitedReader fails a read past its limit instead of truncating silently.
type limitedReader struct {
	r     io.Reader
	left  int64
	name  string
	limit int64
}

func (b *limitedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, &Error{Code: CodeFileTooLarge, Message: fmt.Sprintf("file %s is over the limit of %d bytes", b.name, b.limit)}
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// Upload sends a file to the app's upload route and returns the FileData
// value to put in a job's inputs. r is read to its end, at most limit
// bytes (limit <= 0: the app's own max_file_size, if any).
func (c *Client) Upload(ctx context.Context, name string, r io.Reader, limit int64) (map[string]any, error) {
	api, err := c.API(ctx)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = api.MaxFileSize
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, err := mw.CreateFormFile("files", path.Base(name))
	if err != nil {
		return nil, fmt.Errorf("upstream: upload: %w", err)
	}
	src := r
	if limit > 0 {
		src = io.LimitReader(r, limit+1)
	}
	n, err := io.Copy(part, src)
	if err != nil {
		return nil, fmt.Errorf("upstream: upload %s: %w", name, err)
	}
	if limit > 0 && n > limit {
		return nil, &Error{Code: CodeFileTooLarge, Message: fmt.Sprintf("file %s is over the limit of %d bytes", name, limit)}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("upstream: upload: %w", err)
	}
	req, err := c.request(ctx, http.MethodPost, api.BaseURL+api.Prefix+"/upload", &buf,
		http.Header{"Content-Type": {mw.FormDataContentType()}})
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(buf.Len())
	resp, err := c.do(req, "upload "+name)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var paths []string
	if err := decodeBody(resp.Body, "upload", &paths); err != nil {
		return nil, err
	}
	if len(paths) != 1 {
		return nil, &Error{Code: CodeUnavailable, Message: "upload: the upstream answered " + strconv.Itoa(len(paths)) + " paths for one file"}
	}
	return map[string]any{
		"path": paths[0], "orig_name": path.Base(name), "size": n,
		"meta": map[string]any{"_type": "gradio.FileData"},
	}, nil
}
