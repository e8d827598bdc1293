// Package session runs one browser session of the spacerelay protocol
// (web/PROTOCOL.md): it decodes the browser's messages, owns the session's
// jobs, uploads and token, and writes every message to the socket.
//
// One goroutine owns a Session: Run. It alone reads and changes the
// session's state and it alone writes to the WebSocket, so the Session has
// no mutex. Helpers own nothing and talk to Run over channels: a read loop,
// a ping while one is in flight, one goroutine per job (it follows the job
// upstream, translates its events, fetches their files and hands each
// message to Run) and one per upload (it streams the upload's bytes to the
// upstream as Run hands them over). An idle session is two goroutines: Run
// and its read loop.
package session

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/upstream"
)

// Conn is the browser side of a session. *websocket.Conn satisfies it.
type Conn interface {
	Reader(ctx context.Context) (websocket.MessageType, io.Reader, error)
	Write(ctx context.Context, typ websocket.MessageType, p []byte) error
	Ping(ctx context.Context) error
	Close(code websocket.StatusCode, reason string) error
	// CloseNow closes the connection without a close handshake: it ends a
	// write that timed out.
	CloseNow() error
}

// Upstream is what a Session needs of the upstream Gradio client.
// ClientUpstream adapts an *upstream.Client.
type Upstream interface {
	// Open starts the visitor's upstream session, with the visitor's
	// headers (their X-IP-Token).
	Open(header http.Header) Visitor
}

// Visitor is one visitor's upstream session; *upstream.Session is one.
// Every request it makes carries the visitor's headers and cookies.
type Visitor interface {
	// Submit queues a job to join the upstream queue, after the jobs
	// submitted before it, and returns at once; see
	// (*upstream.Session).Submit. ctx governs the job.
	Submit(ctx context.Context, call upstream.Call) (Job, error)
	// Download opens an output file, at most limit bytes.
	Download(ctx context.Context, f upstream.FileData, limit int64) (*upstream.Download, error)
	// Upload streams a file to the upstream, at most limit bytes, and
	// returns the FileData value for a job's inputs.
	Upload(ctx context.Context, u upstream.Upload, limit int64) (map[string]any, error)
	// SetHeader replaces the visitor's headers for later requests.
	SetHeader(h http.Header)
	// Close cancels what is left and ends the upstream session.
	Close() error
}

// Job is a job submitted upstream; *upstream.Job is one.
type Job interface {
	// Follow hands each event of the job to fn until it ends; see
	// (*upstream.Job).Follow.
	Follow(fn func(upstream.Event) error) error
}

// ClientUpstream adapts c to Upstream.
func ClientUpstream(c *upstream.Client) Upstream { return clientUpstream{c} }

type clientUpstream struct{ c *upstream.Client }

func (u clientUpstream) Open(h http.Header) Visitor { return visitor{u.c.NewSession(h)} }

// visitor adapts an *upstream.Session to Visitor.
type visitor struct{ *upstream.Session }

func (v visitor) Submit(ctx context.Context, call upstream.Call) (Job, error) {
	j, err := v.Session.Submit(ctx, call)
	if err != nil {
		return nil, err
	}
	return j, nil
}

// Config configures one Session. API is required; every other zero value
// means the documented default.
type Config struct {
	// ID names the session in hello and in logs. Defaults to a new UUID.
	ID string
	// API is the upstream's API description, for hello and for endpoint
	// names. Required.
	API *upstream.API
	// DefaultEndpoint is used by a submit without an endpoint. Empty means
	// the upstream's only endpoint, if it has exactly one.
	DefaultEndpoint string

	// Token is the visitor's token from the upgrade request, or "". It is
	// sent upstream as X-IP-Token (the header ZeroGPU reads) on every
	// request of the visitor and nowhere else. Refresh replaces it.
	Token string
	// Refresh, if set, is where and how the page hands the session a fresh
	// token (PROTOCOL.md section 6): hello tells the page. Its Key is
	// secret: it is never logged.
	Refresh *Refresh
	// TokenRefreshMargin is how long before its token's exp the session
	// sends token_expiring. Defaults to 30 s.
	TokenRefreshMargin time.Duration

	// MaxJobs bounds the session's unfinished jobs. Defaults to 2.
	MaxJobs int
	// MaxMessageBytes is the largest browser message, announced in hello;
	// the relay enforces it on the socket. Defaults to 65536.
	MaxMessageBytes int64
	// MaxFileBytes bounds one relayed file. Defaults to 20 MiB.
	MaxFileBytes int64
	// MaxJobBytes bounds the file bytes one job may hold in memory at once
	// (the files of one output waiting to be written). Defaults to 64 MiB.
	MaxJobBytes int64
	// Budget bounds the file bytes all sessions hold in memory, shared by
	// them. Nil means no bound but the per-job and per-upload ones.
	Budget *Budget
	// MaxUploadBytes bounds one upload. Defaults to 50 MiB; the API's
	// MaxFileSize (the Space's own limit) lowers it.
	MaxUploadBytes int64
	// MaxSessionUploadBytes bounds the session's uploads together.
	// Defaults to 200 MiB.
	MaxSessionUploadBytes int64
	// UploadChunkBytes is the largest binary frame of an upload. Defaults
	// to 256 KiB.
	UploadChunkBytes int64
	// WriteTimeout bounds every write to the socket; a browser that cannot
	// take a message in time is disconnected. Defaults to 10 s.
	WriteTimeout time.Duration
	// Pings says when to ping the browser (WebSocket ping): once per the
	// Ticker's interval, at a phase of the session's own. A browser that
	// does not answer within an interval is disconnected. Share one Ticker
	// among all sessions. Nil means a Ticker of the session's own every
	// PingInterval.
	Pings *Ticker
	// PingInterval is used when Pings is nil. Defaults to 30 s; negative
	// disables pings.
	PingInterval time.Duration

	// Version is the relay's version, for hello.
	Version string

	// Now is the clock, for token expiry. Defaults to time.Now.
	Now func() time.Time
	// Hooks observe the session, for metrics. Nil fields are skipped.
	Hooks Hooks
}

// Hooks observe a session. They run on the session's goroutines and must
// not block.
type Hooks struct {
	// JobEnded reports a job's end.
	JobEnded func(JobStats)
	// Sent reports bytes written to the browser: kind "text" or "file".
	Sent func(kind string, bytes int)
	// Relayed reports the time a job's message spent in the relay: from
	// the moment the upstream client read its event's message off the
	// socket (upstream.ReadAt; for events of other Upstreams, when the
	// event was handed over) until its write to the browser returned. It is
	// reported for every message written that carries no file (a file's
	// download is not relaying: its time is in the job's), and not for
	// superseded messages dropped under backpressure.
	Relayed func(time.Duration)
}

// JobStats describes an ended job. Every job the session accepted for
// submission is reported exactly once.
type JobStats struct {
	Session   string // the session's ID
	Job       string // the job's id, as the page chose it
	Endpoint  string
	Outcome   string        // "completed", "error", "cancelled", or "ended" (the session ended first)
	Code      string        // the error code, for Outcome "error"
	Err       error         // the failure in full, for Outcome "error": for logs, never for people
	QueueWait time.Duration // from submit to started (0 if it never started)
	Duration  time.Duration // from submit to its end
}

// Refresh is how a page hands its session a fresh token.
type Refresh struct {
	URL string // the route, e.g. /v1/sessions/{id}/token
	Key string // the bearer key: 256 random bits, base64url
}

// The reasons a session ends, for CloseCode and for logs.
var (
	// ErrClientGone: the browser closed the socket, or it broke.
	ErrClientGone = errors.New("session: browser gone")
	// ErrShutdown: the relay is shutting down (close code 1001).
	ErrShutdown = errors.New("session: relay shutting down")
	// ErrSlowConsumer: the browser did not take a message within the write
	// timeout (close code 1008).
	ErrSlowConsumer = errors.New("session: slow consumer")
	// ErrProtocol: a flood of bad messages (close code 1008).
	ErrProtocol = errors.New("session: too many bad messages")
	// ErrTooBig: a message over MaxMessageBytes (close code 1009).
	ErrTooBig = errors.New("session: message too big")
	// ErrPingTimeout: the browser did not answer a ping in time.
	ErrPingTimeout = errors.New("session: ping timeout")
	// ErrUpstreamChanged: the Space was redeployed and its API changed
	// (close code 1012): the page reconnects and reads the new hello. Give
	// it as the cause of Run's context (context.WithCancelCause).
	ErrUpstreamChanged = errors.New("session: the Space was updated")
)

// CloseCode returns the WebSocket close code for a session that ended
// with err, as PROTOCOL.md section 7 lists them.
func CloseCode(err error) websocket.StatusCode {
	switch {
	case err == nil, errors.Is(err, ErrClientGone):
		return websocket.StatusNormalClosure
	case errors.Is(err, ErrShutdown):
		return websocket.StatusGoingAway
	case errors.Is(err, ErrUpstreamChanged):
		return websocket.StatusServiceRestart
	case errors.Is(err, ErrSlowConsumer), errors.Is(err, ErrProtocol), errors.Is(err, ErrPingTimeout):
		return websocket.StatusPolicyViolation
	case errors.Is(err, ErrTooBig):
		return websocket.StatusMessageTooBig
	}
	return websocket.StatusInternalError
}
