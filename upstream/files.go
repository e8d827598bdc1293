package upstream

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
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

// Download opens an output file of a job with the Client's own
// credentials; a visitor's files are better fetched with
// (*Session).Download. A file known to be larger than limit bytes gives
// CodeFileTooLarge at once; one that turns out larger fails while reading.
// limit <= 0 means no limit. The caller closes Body.
func (c *Client) Download(ctx context.Context, f FileData, limit int64) (*Download, error) {
	return c.download(ctx, c.http, nil, f, limit)
}

// Download opens an output file of one of the session's jobs with the
// visitor's headers and cookies, as Client.Download does.
func (s *Session) Download(ctx context.Context, f FileData, limit int64) (*Download, error) {
	header, ok := s.snapshot()
	if !ok {
		return nil, ErrClosed
	}
	return s.c.download(ctx, s.http, header, f, limit)
}

func (c *Client) download(ctx context.Context, hc *http.Client, header http.Header, f FileData, limit int64) (*Download, error) {
	if f.IsStream {
		return nil, &Error{Code: CodeUnavailable, Message: "File " + f.Name() + " is a live stream, which the relay does not pass on."}
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
	req, err := c.request(ctx, http.MethodGet, u.String(), nil, header)
	if err != nil {
		stop()
		return nil, err
	}
	resp, err := c.send(hc, req, "download "+f.Name())
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

// Upload sends a file to the app's upload route with the Client's own
// credentials and returns the FileData value to put in a job's inputs. r
// is read to its end, at most limit bytes (limit <= 0: the app's own
// max_file_size, if any). A visitor's files are better sent with
// (*Session).Upload.
func (c *Client) Upload(ctx context.Context, name string, r io.Reader, limit int64) (map[string]any, error) {
	return c.upload(ctx, c.http, nil, Upload{Name: name, Size: -1, Body: r}, limit)
}

// Upload describes a file to send to the app.
type Upload struct {
	Name string    // the file's name, for the app
	MIME string    // its media type, if known
	Size int64     // its exact size in bytes, or -1 if not known
	Body io.Reader // its bytes: read as they are sent, never held whole
}

// Upload streams a file to the app's upload route with the visitor's
// headers and cookies, as its bytes come from u.Body, and returns the
// FileData value to put in a job's inputs (its "meta" included, which
// Gradio requires). A Body that ends before Size bytes, or brings more,
// fails the upload. At most limit bytes are sent (limit <= 0: the app's
// own max_file_size, if any).
func (s *Session) Upload(ctx context.Context, u Upload, limit int64) (map[string]any, error) {
	header, ok := s.snapshot()
	if !ok {
		return nil, ErrClosed
	}
	return s.c.upload(ctx, s.http, header, u, limit)
}

func (c *Client) upload(ctx context.Context, hc *http.Client, header http.Header, up Upload, limit int64) (map[string]any, error) {
	api, err := c.API(ctx)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = api.MaxFileSize
	}
	name := path.Base(up.Name)
	if limit > 0 && up.Size > limit {
		return nil, tooLarge(name, up.Size, limit)
	}
	body, contentType, length, err := multipartBody(name, up, limit)
	if err != nil {
		return nil, err
	}
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", contentType)
	req, err := c.request(ctx, http.MethodPost, api.BaseURL+api.Prefix+"/upload", body, header)
	if err != nil {
		return nil, err
	}
	req.ContentLength = length
	resp, err := c.send(hc, req, "upload "+name)
	if err != nil {
		var sized *sizeError
		if errors.As(err, &sized) {
			return nil, sized.err
		}
		return nil, err
	}
	defer resp.Body.Close()
	var paths []string
	if err := decodeBody(resp.Body, "upload", &paths); err != nil {
		return nil, err
	}
	if len(paths) != 1 {
		return nil, &Error{Code: CodeUnavailable, Message: msgBadAnswer, Err: fmt.Errorf("upload: the upstream answered %d paths for one file", len(paths))}
	}
	f := map[string]any{
		"path": paths[0], "orig_name": name,
		"meta": map[string]any{"_type": "gradio.FileData"},
	}
	if up.Size >= 0 {
		f["size"] = up.Size
	}
	if up.MIME != "" {
		f["mime_type"] = up.MIME
	}
	return f, nil
}

// multipartBody frames up.Body as the one part "files" of a form, read as
// it is sent. length is -1 when up.Size is not known.
func multipartBody(name string, up Upload, limit int64) (io.Reader, string, int64, error) {
	var frame bytes.Buffer
	mw := multipart.NewWriter(&frame)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{"name": "files", "filename": name}))
	h.Set("Content-Type", cmp.Or(up.MIME, "application/octet-stream"))
	if _, err := mw.CreatePart(h); err != nil {
		return nil, "", 0, fmt.Errorf("upstream: upload: %w", err)
	}
	head := frame.Len()
	if err := mw.Close(); err != nil { // writes the closing boundary after the head
		return nil, "", 0, fmt.Errorf("upstream: upload: %w", err)
	}
	b := frame.Bytes()
	content := &sizedReader{r: up.Body, size: up.Size, limit: limit, name: name}
	body := io.MultiReader(bytes.NewReader(b[:head]), content, bytes.NewReader(b[head:]))
	length := int64(-1)
	if up.Size >= 0 {
		length = int64(len(b)) + up.Size
	}
	return body, mw.FormDataContentType(), length, nil
}

// sizedReader reads a file's bytes for an upload: exactly size of them
// when size is known, never more than limit.
type sizedReader struct {
	r     io.Reader
	size  int64 // -1: unknown
	limit int64 // <= 0: none
	name  string
	n     int64
}

// sizeError carries an upload's own failure through the HTTP client.
type sizeError struct{ err *Error }

func (e *sizeError) Error() string { return e.err.Error() }

func (r *sizedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	switch {
	case r.limit > 0 && r.n > r.limit:
		return n, &sizeError{&Error{Code: CodeFileTooLarge, Message: fmt.Sprintf("File %s is over the limit of %d bytes.", r.name, r.limit)}}
	case r.size >= 0 && r.n > r.size:
		return n, &sizeError{&Error{Code: CodeInvalidInput, Message: fmt.Sprintf("File %s is longer than its size, %d bytes.", r.name, r.size)}}
	case err == io.EOF && r.size >= 0 && r.n < r.size:
		return n, &sizeError{&Error{Code: CodeInvalidInput, Message: fmt.Sprintf("File %s ended after %d of its %d bytes.", r.name, r.n, r.size)}}
	}
	return n, err
}
