package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"net/http"

	"github.com/coder/websocket"
)

// wsClient is a browser of PROTOCOL.md, written from the document alone: it
// shares no code with the relay. Its methods return errors rather than fail
// the test, so that visitors can run in their own goroutines; one goroutine
// uses a wsClient at a time.
type wsClient struct {
	conn  *websocket.Conn
	ctx   context.Context // bounds every read and write
	token string
	hello relayMsg
	// backlog holds messages read while waiting for another one, oldest
	// first; next takes from it before reading the socket.
	backlog []relayMsg
}

// relayMsg is any relay-to-browser text message of PROTOCOL.md section 4.
type relayMsg struct {
	Type string  `json:"type"`
	ID   *string `json:"id"` // nil: no id (absent or null)

	// error
	Code       string   `json:"code"`
	Title      string   `json:"title"`
	Message    string   `json:"message"`
	RetryAfter *float64 `json:"retry_after"`

	// queued, started, progress, log
	Position  *float64       `json:"position"`
	QueueSize *float64       `json:"queue_size"`
	Steps     []progressStep `json:"steps"`
	Level     string         `json:"level"`

	// file; bytes is the binary frame that followed it
	File  string `json:"file"`
	Name  string `json:"name"`
	MIME  string `json:"mime"`
	Size  int64  `json:"size"`
	bytes []byte

	// partial, result
	Data     []json.RawMessage `json:"data"`
	Duration *float64          `json:"duration"`

	// hello
	Protocol  int            `json:"protocol"`
	Session   string         `json:"session"`
	Endpoints []endpointInfo `json:"endpoints"`
	Limits    *helloLimits   `json:"limits"`
	Token     *tokenInfo     `json:"token"`

	raw []byte // the whole text frame
}

type progressStep struct {
	Index  *float64 `json:"index"`
	Length *float64 `json:"length"`
	Unit   *string  `json:"unit"`
	Desc   *string  `json:"desc"`
}

type endpointInfo struct {
	Name   string `json:"name"`
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Required bool   `json:"required"`
		Default  any    `json:"default"`
	} `json:"inputs"`
	Outputs []struct {
		Name      string `json:"name"`
		Component string `json:"component"`
	} `json:"outputs"`
}

type helloLimits struct {
	MaxJobs         int64 `json:"max_jobs"`
	MaxMessageBytes int64 `json:"max_message_bytes"`
	MaxFileBytes    int64 `json:"max_file_bytes"`
}

type tokenInfo struct {
	Present   bool    `json:"present"`
	ExpiresAt *string `json:"expires_at"`
}

func (m relayMsg) id() string {
	if m.ID == nil {
		return ""
	}
	return *m.ID
}

func (m relayMsg) String() string { return string(m.raw) }

func (m relayMsg) terminal() bool {
	return m.ID != nil && (m.Type == "result" || m.Type == "error" || m.Type == "cancelled")
}

// fileRef returns the file id of an output {"file":"<id>"}.
func fileRef(raw json.RawMessage) (string, bool) {
	var v struct {
		File *string `json:"file"`
	}
	if json.Unmarshal(raw, &v) != nil || v.File == nil {
		return "", false
	}
	return *v.File, true
}

// dialRelay opens a session as a browser of the visitor with token ("" sends
// none), offering the spacerelay.v1 subprotocol, and reads its hello.
func dialRelay(ctx context.Context, r *relayProc, token string) (*wsClient, error) {
	c, _, err := dialUpgrade(ctx, r, tokenHeader(token))
	if err != nil {
		return nil, err
	}
	m, err := c.next()
	if err != nil {
		c.conn.CloseNow()
		return nil, fmt.Errorf("reading hello: %w", err)
	}
	if m.Type != "hello" {
		c.conn.CloseNow()
		return nil, fmt.Errorf("first message = %s, want a hello", m)
	}
	c.hello = m
	return c, nil
}

// tokenHeader returns the upgrade request's headers for a visitor with
// token ("" sends none).
func tokenHeader(token string) http.Header {
	h := http.Header{}
	if token != "" {
		h.Set("X-IP-Token", token)
	}
	return h
}

// dialUpgrade opens the socket with the request headers h and reads nothing.
func dialUpgrade(ctx context.Context, r *relayProc, h http.Header) (*wsClient, *http.Response, error) {
	conn, resp, err := websocket.Dial(ctx, r.wsURL, &websocket.DialOptions{
		HTTPClient:   httpClient,
		HTTPHeader:   h,
		Subprotocols: []string{"spacerelay.v1"},
	})
	if err != nil {
		return nil, resp, err
	}
	conn.SetReadLimit(64 << 20) // files are announced, not limited, by the page
	return &wsClient{conn: conn, ctx: ctx, token: h.Get("X-IP-Token")}, resp, nil
}

// next returns the next message, from the backlog or the socket.
func (c *wsClient) next() (relayMsg, error) {
	if len(c.backlog) > 0 {
		m := c.backlog[0]
		c.backlog = c.backlog[1:]
		return m, nil
	}
	return c.read()
}

// read reads the next message from the socket. A file message comes with
// its binary frame, which must follow it immediately and have exactly its
// size (PROTOCOL.md section 4, guarantee 2).
func (c *wsClient) read() (relayMsg, error) {
	typ, b, err := c.conn.Read(c.ctx)
	if err != nil {
		return relayMsg{}, err
	}
	if typ != websocket.MessageText {
		return relayMsg{}, fmt.Errorf("a binary frame of %d bytes that no file message announced", len(b))
	}
	var m relayMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return relayMsg{}, fmt.Errorf("text frame %s: %v", b, err)
	}
	m.raw = b
	if m.Type == "" {
		return relayMsg{}, fmt.Errorf("text frame %s has no type", b)
	}
	if m.Type != "file" {
		return m, nil
	}
	typ, b, err = c.conn.Read(c.ctx)
	if err != nil {
		return relayMsg{}, fmt.Errorf("the binary frame after %s: %w", m, err)
	}
	if typ != websocket.MessageBinary {
		return relayMsg{}, fmt.Errorf("%s was followed by the text frame %s, want its %d bytes", m, b, m.Size)
	}
	if int64(len(b)) != m.Size {
		return relayMsg{}, fmt.Errorf("%s was followed by a binary frame of %d bytes", m, len(b))
	}
	m.bytes = b
	return m, nil
}

// expect returns the first message that match accepts; the others stay in
// the backlog, in order.
func (c *wsClient) expect(match func(relayMsg) bool) (relayMsg, error) {
	for i, m := range c.backlog {
		if match(m) {
			c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
			return m, nil
		}
	}
	for {
		m, err := c.read()
		if err != nil {
			return relayMsg{}, err
		}
		if match(m) {
			return m, nil
		}
		c.backlog = append(c.backlog, m)
	}
}

// send writes v as one text frame.
func (c *wsClient) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.sendRaw(string(b))
}

func (c *wsClient) sendRaw(s string) error {
	return c.conn.Write(c.ctx, websocket.MessageText, []byte(s))
}

func (c *wsClient) submit(id, endpoint string, inputs map[string]any) error {
	return c.send(map[string]any{"type": "submit", "id": id, "endpoint": endpoint, "inputs": inputs})
}

func (c *wsClient) cancel(id string) error {
	return c.send(map[string]any{"type": "cancel", "id": id})
}

// until returns the messages of job id up to and including the first one
// that stop accepts.
func (c *wsClient) until(id string, stop func(relayMsg) bool) ([]relayMsg, error) {
	var msgs []relayMsg
	for {
		m, err := c.expect(func(m relayMsg) bool { return m.id() == id })
		if err != nil {
			return msgs, fmt.Errorf("job %s after %d messages: %w", id, len(msgs), err)
		}
		msgs = append(msgs, m)
		if stop(m) || m.terminal() {
			return msgs, nil
		}
	}
}

// job returns the messages of job id up to and including its terminal one.
func (c *wsClient) job(id string) ([]relayMsg, error) {
	return c.until(id, relayMsg.terminal)
}

// quiet sends a ping and reads until its pong: nothing of job id may come
// before it (the job has ended). Other messages stay in the backlog.
func (c *wsClient) quiet(id string) error {
	if err := c.send(map[string]string{"type": "ping"}); err != nil {
		return err
	}
	var late []relayMsg
	_, err := c.expect(func(m relayMsg) bool {
		if m.id() == id && id != "" {
			late = append(late, m)
			return false
		}
		return m.Type == "pong"
	})
	if err != nil {
		return fmt.Errorf("waiting for pong: %w", err)
	}
	if len(late) > 0 {
		return fmt.Errorf("job %s got %d messages after its end, first %s", id, len(late), late[0])
	}
	return nil
}

// close closes the socket normally (1000).
func (c *wsClient) close() error {
	return c.conn.Close(websocket.StatusNormalClosure, "")
}

// drop ends the TCP connection without a close frame, as a crashed tab or
// a lost network does.
func (c *wsClient) drop() { c.conn.CloseNow() }

// checkJob checks the messages of one job, ending with its terminal one,
// against PROTOCOL.md sections 4 and 5: the order accepted, queued*,
// started, then progress, log, file and partial, then exactly one terminal
// message; every file reference in partial and result data names a file
// message of the same job that came before it. It returns the files by id.
func checkJob(msgs []relayMsg) (map[string]relayMsg, error) {
	rank := map[string]int{"accepted": 0, "queued": 1, "started": 2,
		"progress": 3, "log": 3, "file": 3, "partial": 3,
		"result": 4, "error": 4, "cancelled": 4}
	files := make(map[string]relayMsg)
	if len(msgs) == 0 {
		return nil, errors.New("no messages")
	}
	if first := msgs[0]; first.Type != "accepted" && first.Type != "error" {
		return nil, fmt.Errorf("first message %s, want accepted (or an error that refuses the job)", first)
	}
	stage := -1
	for i, m := range msgs {
		r, ok := rank[m.Type]
		switch {
		case !ok:
			return nil, fmt.Errorf("message %d: unknown type in %s", i, m)
		case r < stage, r == stage && (r == 0 || r == 2):
			return nil, fmt.Errorf("message %d: %s after %s", i, m, msgs[i-1])
		case (r == 3 || m.Type == "result") && stage < 2:
			return nil, fmt.Errorf("message %d: %s before started", i, m)
		case (r == 4) != (i == len(msgs)-1):
			return nil, fmt.Errorf("message %d of %d: %s: want one terminal message, last", i, len(msgs), m)
		}
		stage = r
		if err := checkFiles(files, m); err != nil {
			return nil, fmt.Errorf("message %d: %v", i, err)
		}
	}
	return files, nil
}

// checkFiles records a file message in files, or checks that the file
// references of a partial or result name files already in it.
func checkFiles(files map[string]relayMsg, m relayMsg) error {
	switch m.Type {
	case "file":
		if _, dup := files[m.File]; dup || m.File == "" {
			return fmt.Errorf("file id %q repeated or empty: %s", m.File, m)
		}
		files[m.File] = m
	case "partial", "result":
		for _, d := range m.Data {
			if id, ok := fileRef(d); ok {
				if _, seen := files[id]; !seen {
					return fmt.Errorf("%s refers to file %s before its file message", m, id)
				}
			}
		}
	}
	return nil
}

// decodePNG decodes a relayed file as a PNG image.
func decodePNG(f relayMsg) (image.Image, error) {
	if f.MIME != "image/png" {
		return nil, fmt.Errorf("file %s: mime %q, want image/png", f.File, f.MIME)
	}
	img, err := png.Decode(bytes.NewReader(f.bytes))
	if err != nil {
		return nil, fmt.Errorf("file %s (%d bytes) is not a PNG: %v", f.File, len(f.bytes), err)
	}
	return img, nil
}

// generateInfo decodes /generate's second output, a JSON text (SPEC.md step 6).
func generateInfo(res relayMsg) (out struct {
	Token, Prompt string
	Steps         int
}, err error) {
	if len(res.Data) != 2 {
		return out, fmt.Errorf("result %s: want 2 outputs", res)
	}
	var s string
	if err := json.Unmarshal(res.Data[1], &s); err != nil {
		return out, fmt.Errorf("info output %s: want a string", res.Data[1])
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return out, fmt.Errorf("info output %q: %v", s, err)
	}
	return out, nil
}
