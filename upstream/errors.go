package upstream

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an upstream failure for programs. The values match the
// error codes of the browser protocol where one exists.
type Code string

// The codes an *Error can carry.
const (
	// CodeQuotaExceeded: the visitor's ZeroGPU quota is used up; RetryAfter
	// says when it refills, if the upstream said.
	CodeQuotaExceeded Code = "quota_exceeded"
	// CodeGPUUnavailable: no GPU could be had in time; worth retrying.
	CodeGPUUnavailable Code = "gpu_unavailable"
	// CodeTokenExpired: the visitor's X-IP-Token was refused as expired.
	CodeTokenExpired Code = "token_expired"
	// CodeQueueFull: the upstream queue refused the job (HTTP 503).
	CodeQueueFull Code = "queue_full"
	// CodeRateLimited: the Hugging Face proxy refused the request (HTTP 429).
	CodeRateLimited Code = "rate_limited"
	// CodeInvalidInput: the inputs do not fit the endpoint, or the app's
	// validation refused them (HTTP 422).
	CodeInvalidInput Code = "invalid_input"
	// CodeUnknownEndpoint: the app has no such API endpoint.
	CodeUnknownEndpoint Code = "unknown_endpoint"
	// CodeUnauthorized: the Space is private or behind a login, and the
	// credentials are missing or wrong.
	CodeUnauthorized Code = "unauthorized"
	// CodeFileTooLarge: a file is over the size limit.
	CodeFileTooLarge Code = "file_too_large"
	// CodeAppError: the app's function raised; Title and Message are the
	// app's own (HTML stripped), or a neutral message when it hides them.
	CodeAppError Code = "upstream_error"
	// CodeUnavailable: the upstream cannot be reached or answered badly:
	// a network failure, a 5xx, a timeout, a broken stream, a sleeping,
	// building or paused Space.
	CodeUnavailable Code = "upstream_unavailable"
)

// Error is an upstream failure, classified. Every error the package returns
// for a failed request or job is (or wraps) an *Error, except the caller's
// own context errors.
type Error struct {
	Code    Code
	Title   string // short, for people; may be empty
	Message string // for people; never contains a token
	// RetryAfter is how long to wait before trying again, when the upstream
	// said (ZeroGPU quota), else 0.
	RetryAfter time.Duration
	// Status is the HTTP status that caused the error, or 0.
	Status int
	// Stage is the Space's runtime stage on the Hub ("SLEEPING",
	// "BUILDING", "PAUSED", "RUNTIME_ERROR", …) when the error is that the
	// Space is not running; else "".
	Stage string
	// Err is the underlying cause, if any.
	Err error
}

// Error returns the code, the texts for people, and the cause: what a
// log should say. Show people Title and Message only.
func (e *Error) Error() string {
	msg := e.Message
	if e.Title != "" && msg != "" {
		msg = e.Title + ": " + msg
	} else if e.Title != "" {
		msg = e.Title
	}
	s := "upstream: " + string(e.Code)
	if msg != "" {
		s += ": " + msg
	}
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of the first *Error in err's chain, or "" if there
// is none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Messages for people of failures whose details (an address, a Go error)
// are for the log only: they stay in Error.Err.
const (
	msgUnreachable  = "The Space cannot be reached right now."
	msgBadAnswer    = "The Space gave an answer that could not be read."
	msgStreamBroke  = "The connection to the Space broke."
	msgStreamSilent = "The Space fell silent: nothing came from it for too long."
	msgSessionLost  = "The Space lost this visitor's session: it restarted, or it runs several replicas without sticky sessions."
)

// ErrSessionLost is the cause (Error.Err) of a failure because the
// upstream no longer knows the session: a sign that it restarted or was
// redeployed.
var ErrSessionLost = errors.New("upstream: the upstream lost the session")

var errNoEventID = errors.New("join: the upstream gave no event id")

// unavailable wraps a transport failure of the request op.
func unavailable(op string, err error) *Error {
	return &Error{Code: CodeUnavailable, Message: msgUnreachable, Err: fmt.Errorf("%s: %w", op, err)}
}
