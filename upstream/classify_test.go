package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func ptr(s string) *string { return &s }

func TestAppError(t *testing.T) {
	t.Parallel()
	const examples = "Try re-running outside of examples if it happened after clicking one"
	tests := []struct {
		name   string
		title  string
		msg    *string
		legacy bool
		want   Error
	}{
		// The texts of spaces' schedule() (GRADIO.md 6.4), with the hints
		// for API callers that make them longer.
		{
			name:  "free quota with PRO hint",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in 0:47:10. Subscribe to Hugging Face PRO to get 25 min of ZeroGPU quota a day - https://huggingface.co/subscribe/pro?from=ZeroGPU"),
			want: Error{Code: CodeQuotaExceeded, Title: "ZeroGPU quota exceeded", RetryAfter: 47*time.Minute + 10*time.Second,
				Message: "You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in 0:47:10."},
		},
		{
			name:  "pro quota with credits hint, days",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("You have exceeded your Pro ZeroGPU quota (120s requested vs. 30s left). Try again in 1 day, 2:03:04. Add credits to keep using ZeroGPU. $1 for 10 minutes of ZeroGPU inference - https://huggingface.co/settings/billing?add-credits=true"),
			want: Error{Code: CodeQuotaExceeded, Title: "ZeroGPU quota exceeded", RetryAfter: 26*time.Hour + 3*time.Minute + 4*time.Second,
				Message: "You have exceeded your Pro ZeroGPU quota (120s requested vs. 30s left). Try again in 1 day, 2:03:04."},
		},
		{
			name:  "anonymous quota with token hint, fractional seconds",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("You have exceeded your ZeroGPU quota (60s requested vs. 0s left). Try again in 0:00:05.500000. Authenticate with a Hugging Face token for more quota - https://huggingface.co/settings/tokens"),
			want: Error{Code: CodeQuotaExceeded, Title: "ZeroGPU quota exceeded", RetryAfter: 5500 * time.Millisecond,
				Message: "You have exceeded your ZeroGPU quota (60s requested vs. 0s left). Try again in 0:00:05.500000."},
		},
		{
			name:  "several days",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("You have exceeded your ZeroGPU quota (60s requested vs. 0s left). Try again in 2 days, 0:00:01. "),
			want: Error{Code: CodeQuotaExceeded, Title: "ZeroGPU quota exceeded", RetryAfter: 48*time.Hour + time.Second,
				Message: "You have exceeded your ZeroGPU quota (60s requested vs. 0s left). Try again in 2 days, 0:00:01."},
		},
		{
			name:  "quota without a hint, negative left",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("You have exceeded your free ZeroGPU quota (82s requested vs. -41s left). Try again in 0:00:00. "),
			want: Error{Code: CodeQuotaExceeded, Title: "ZeroGPU quota exceeded",
				Message: "You have exceeded your free ZeroGPU quota (82s requested vs. -41s left). Try again in 0:00:00."},
		},
		{
			name:  "runs limit",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("You have exceeded your ZeroGPU runs limit. Subscribe to Hugging Face PRO to get 25 min of ZeroGPU quota a day - https://huggingface.co/subscribe/pro?from=ZeroGPU"),
			want:  Error{Code: CodeQuotaExceeded, Title: "ZeroGPU quota exceeded", Message: "You have exceeded your ZeroGPU runs limit."},
		},
		{
			name:  "space GPU limit",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("Space app has reached its GPU limit. " + examples),
			want:  Error{Code: CodeQuotaExceeded, Title: "ZeroGPU quota exceeded", Message: "Space app has reached its GPU limit. " + examples},
		},
		{
			name:  "queue timeout without token under the quota title",
			title: "ZeroGPU quota exceeded",
			msg:   ptr("No GPU was available after 60s. " + examples),
			want:  Error{Code: CodeGPUUnavailable, Title: "ZeroGPU quota exceeded", Message: "No GPU was available after 60s. " + examples},
		},
		{
			name:  "queue timeout, HTML sign-up link",
			title: "ZeroGPU queue timeout",
			msg:   ptr(`No GPU was available after 60s. <a style="white-space: nowrap;text-underline-offset: 2px;color: var(--body-text-color)" href="https://huggingface.co/join">Create a free account</a> to get a higher priority in ZeroGPU queues.`),
			want: Error{Code: CodeGPUUnavailable, Title: "ZeroGPU queue timeout",
				Message: "No GPU was available after 60s. Create a free account to get a higher priority in ZeroGPU queues."},
		},
		{
			name:  "queue timeout, HTML PRO link",
			title: "ZeroGPU queue timeout",
			msg:   ptr(`No GPU was available after 60s. <a style="white-space: nowrap;text-underline-offset: 2px;color: var(--body-text-color)" href="https://huggingface.co/subscribe/pro?from=ZeroGPU">Subscribe to Pro</a> to get the highest priority in ZeroGPU queues.`),
			want: Error{Code: CodeGPUUnavailable, Title: "ZeroGPU queue timeout",
				Message: "No GPU was available after 60s. Subscribe to Pro to get the highest priority in ZeroGPU queues."},
		},
		{
			name:  "queue timeout, pro",
			title: "ZeroGPU queue timeout",
			msg:   ptr("No GPU was available after 60s. Retry later"),
			want:  Error{Code: CodeGPUUnavailable, Title: "ZeroGPU queue timeout", Message: "No GPU was available after 60s. Retry later"},
		},
		{
			name:  "queue timeout title alone",
			title: "ZeroGPU queue timeout",
			msg:   ptr("Please wait"),
			want:  Error{Code: CodeGPUUnavailable, Title: "ZeroGPU queue timeout", Message: "Please wait"},
		},
		{
			name:  "illegal duration",
			title: "ZeroGPU illegal duration",
			msg:   ptr("The requested GPU duration (180s) is larger than the maximum allowed"),
			want:  Error{Code: CodeInvalidInput, Title: "ZeroGPU illegal duration", Message: "The requested GPU duration (180s) is larger than the maximum allowed"},
		},
		{
			name:   "illegal duration without title",
			msg:    ptr("'The requested GPU duration (180s) is larger than the maximum allowed'"),
			legacy: true,
			want:   Error{Code: CodeInvalidInput, Message: "The requested GPU duration (180s) is larger than the maximum allowed"},
		},
		{
			name:  "scheduler 503",
			title: "ZeroGPU client error",
			msg:   ptr("No GPU was available"),
			want:  Error{Code: CodeGPUUnavailable, Title: "ZeroGPU client error", Message: "No GPU was available"},
		},
		{
			name:  "expired token",
			title: "ZeroGPU client error",
			msg:   ptr("Expired ZeroGPU proxy token"),
			want:  Error{Code: CodeTokenExpired, Title: "ZeroGPU client error", Message: "Expired ZeroGPU proxy token"},
		},
		{
			name:  "internal gradio error",
			title: "ZeroGPU client error",
			msg:   ptr("Internal Gradio error"),
			want:  Error{Code: CodeAppError, Title: "ZeroGPU client error", Message: "Internal Gradio error"},
		},
		{
			name:  "pending credits",
			title: "ZeroGPU pending credits exceeded",
			msg:   ptr("You have too many ZeroGPU credits allocated to running tasks. Try again once some of those tasks have completed."),
			want: Error{Code: CodeGPUUnavailable, Title: "ZeroGPU pending credits exceeded",
				Message: "You have too many ZeroGPU credits allocated to running tasks. Try again once some of those tasks have completed."},
		},
		{
			name:  "worker aborted",
			title: "ZeroGPU worker error",
			msg:   ptr("GPU task aborted"),
			want:  Error{Code: CodeGPUUnavailable, Title: "ZeroGPU worker error", Message: "GPU task aborted"},
		},
		{
			name:  "worker exception class",
			title: "ZeroGPU worker error",
			msg:   ptr("OutOfMemoryError"),
			want:  Error{Code: CodeAppError, Title: "ZeroGPU worker error", Message: "OutOfMemoryError"},
		},
		{
			name:  "older spaces, task aborted",
			title: "Error",
			msg:   ptr("GPU task aborted"),
			want:  Error{Code: CodeGPUUnavailable, Title: "Error", Message: "GPU task aborted"},
		},
		{
			name:  "scheduler failure shown",
			title: "Error",
			msg:   ptr("ZeroGPU API /schedule error: 500 (Internal Server Error)"),
			want:  Error{Code: CodeAppError, Title: "Error", Message: "ZeroGPU API /schedule error: 500 (Internal Server Error)"},
		},
		// Older variants, title "Error", HTML inside.
		{
			name:  "old GPU quota with sign-up link",
			title: "Error",
			msg:   ptr(`You have exceeded your GPU quota (60s requested vs. 56s left). <a href="https://huggingface.co/join">Create a free account</a> to get more usage quota.`),
			want: Error{Code: CodeQuotaExceeded, Title: "Error",
				Message: "You have exceeded your GPU quota (60s requested vs. 56s left). Create a free account to get more usage quota."},
		},
		{
			name:  "old free GPU quota",
			title: "Error",
			msg:   ptr("You have exceeded your free GPU quota (60s requested vs. 30s left) Try again in 0:47:10"),
			want: Error{Code: CodeQuotaExceeded, Title: "Error", RetryAfter: 47*time.Minute + 10*time.Second,
				Message: "You have exceeded your free GPU quota (60s requested vs. 30s left) Try again in 0:47:10"},
		},
		{
			name:  "old Pro GPU quota",
			title: "Error",
			msg:   ptr("You have exceeded your Pro GPU quota (300s requested vs. 100s left) Try again in 3:00:00"),
			want: Error{Code: CodeQuotaExceeded, Title: "Error", RetryAfter: 3 * time.Hour,
				Message: "You have exceeded your Pro GPU quota (300s requested vs. 100s left) Try again in 3:00:00"},
		},
		{
			name:  "oldest, left before requested, retry in",
			title: "Error",
			msg:   ptr("You have exceeded your GPU quota (46s left vs. 60s requested). Sign-up on Hugging Face to get more quotas or retry in 0:09:48."),
			want: Error{Code: CodeQuotaExceeded, Title: "Error", RetryAfter: 9*time.Minute + 48*time.Second,
				Message: "You have exceeded your GPU quota (46s left vs. 60s requested). Sign-up on Hugging Face to get more quotas or retry in 0:09:48."},
		},
		{
			name:  "no GPU currently available",
			title: "Error",
			msg:   ptr("No GPU is currently available for you after 60s"),
			want:  Error{Code: CodeGPUUnavailable, Title: "Error", Message: "No GPU is currently available for you after 60s"},
		},
		// Gradio < 5.2: repr-quoted, no title.
		{
			name:   "legacy quoted quota",
			msg:    ptr("'You have exceeded your ZeroGPU quota (60s requested vs. 10s left). Try again in 0:01:00.'"),
			legacy: true,
			want:   Error{Code: CodeQuotaExceeded, RetryAfter: time.Minute, Message: "You have exceeded your ZeroGPU quota (60s requested vs. 10s left). Try again in 0:01:00."},
		},
		{
			name:   "legacy double-quoted repr with escapes",
			msg:    ptr(`"Can't read\nthe file \\data"`),
			legacy: true,
			want:   Error{Code: CodeAppError, Message: `Can't read the file \data`},
		},
		{
			name:   "legacy escaped quote",
			title:  "Error",
			msg:    ptr(`'it\'s "bad"'`),
			legacy: true,
			want:   Error{Code: CodeAppError, Title: "Error", Message: `it's "bad"`},
		},
		{
			name:   "legacy unquoted (HTMLError)",
			msg:    ptr("You have exceeded your GPU quota (60s requested vs. 56s left)."),
			legacy: true,
			want:   Error{Code: CodeQuotaExceeded, Message: "You have exceeded your GPU quota (60s requested vs. 56s left)."},
		},
		{
			name:  "quotes kept on new servers",
			title: "Error",
			msg:   ptr("'quoted'"),
			want:  Error{Code: CodeAppError, Title: "Error", Message: "'quoted'"},
		},
		// Plain app errors.
		{
			name:  "hidden error",
			title: "Error",
			want:  Error{Code: CodeAppError, Title: "Error", Message: msgHidden},
		},
		{
			name: "hidden error, no title",
			want: Error{Code: CodeAppError, Message: msgHidden},
		},
		{
			name:  "gr.Error with HTML (captured from gradio 6.31)",
			title: "Oops",
			msg:   ptr("Bad <b>input</b> &amp; more: <a href='https://x'>see docs</a>"),
			want:  Error{Code: CodeAppError, Title: "Oops", Message: "Bad input & more: see docs"},
		},
		{
			name:  "entities and whitespace",
			title: "Error",
			msg:   ptr("  &lt;none&gt;\n\n&quot;x&quot;\t&#39;y&#39;&nbsp;z<br>w<p>v</p> "),
			want:  Error{Code: CodeAppError, Title: "Error", Message: `<none> "x" 'y' z w v`},
		},
		{
			name:  "less-than sign kept",
			title: "Error",
			msg:   ptr("x < 5 and 3<4 but y>3"),
			want:  Error{Code: CodeAppError, Title: "Error", Message: "x < 5 and 3<4 but y>3"},
		},
		{
			name:  "script dropped",
			title: "<b>Bad</b>",
			msg:   ptr("a<script>alert('x')</script>b<style>p{}</style>c<!-- note -->d"),
			want:  Error{Code: CodeAppError, Title: "Bad", Message: "a b c d"},
		},
		{
			name:  "long message cut",
			title: "Error",
			msg:   ptr(strings.Repeat("é", 1500)),
			want:  Error{Code: CodeAppError, Title: "Error", Message: strings.Repeat("é", 1000) + "…"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appError(tt.title, tt.msg, tt.legacy)
			if *got != tt.want {
				t.Errorf("appError() = %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestHTTPError(t *testing.T) {
	t.Parallel()
	jsonH := http.Header{"Content-Type": {"application/json"}}
	htmlH := http.Header{"Content-Type": {"text/html; charset=utf-8"}}
	textH := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	with := func(h http.Header, k, v string) http.Header {
		h = h.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set(k, v)
		return h
	}
	const hfPage = `<!doctype html>
<html class=""><head><meta charset="utf-8" />
<title>503 - Space unavailable</title>
<style>body { font-family: sans-serif; }</style>
<script>window.x = 1 < 2;</script></head>
<body><nav><a href="/">Hugging Face</a> <a href="/models">Models</a></nav>
<h1>503</h1><p>This Space is sleeping.</p></body></html>`
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   Error // Err not compared
	}{
		// Bodies captured from gradio 6.31 /gradio_api/queue/join.
		{"queue full", 503, jsonH, `{"detail":"Queue is full. Max size is 2 and size is 2."}`,
			Error{Code: CodeQueueFull, Status: 503, Message: "Queue is full. Max size is 2 and size is 2."}},
		{"queue full with retry-after", 503, with(jsonH, "Retry-After", "30"), `{"detail":"Queue is full. Max size is 2 and size is 2."}`,
			Error{Code: CodeQueueFull, Status: 503, RetryAfter: 30 * time.Second, Message: "Queue is full. Max size is 2 and size is 2."}},
		{"validator", 422, jsonH, `{"detail":[{"__type__":"validate","is_valid":false,"message":"Prompt must be longer than 3 characters","parameter_name":"x"}]}`,
			Error{Code: CodeInvalidInput, Status: 422, Message: "x: Prompt must be longer than 3 characters"}},
		{"fastapi validation", 422, jsonH, `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required","input":{"fn_index":1,"session_hash":"x"}}]}`,
			Error{Code: CodeInvalidInput, Status: 422, Message: "body.data: Field required"}},
		{"no fn_index", 400, jsonH, `{"detail":"No function index provided."}`,
			Error{Code: CodeInvalidInput, Status: 400, Message: "No function index provided."}},
		{"no session hash", 400, jsonH, `{"detail":"Session hash not found."}`,
			Error{Code: CodeInvalidInput, Status: 400, Message: "Session hash not found."}},
		{"no such route", 404, jsonH, `{"detail":"Not Found"}`,
			Error{Code: CodeUnavailable, Status: 404, Message: "Not Found"}},
		// From GRADIO.md 6.1.
		{"queue stopped", 503, jsonH, `{"detail":"Queue is stopped."}`,
			Error{Code: CodeUnavailable, Status: 503, Message: "Queue is stopped."}},
		{"several validators", 422, jsonH, `{"detail":[{"is_valid":true,"message":""},{"__type__":"validate","is_valid":false,"message":"Too <b>big</b>"},{"__type__":"validate","is_valid":false,"message":"Bad size","parameter_name":"width"}]}`,
			Error{Code: CodeInvalidInput, Status: 422, Message: "parameter_1: Too big; width: Bad size"}},
		{"several fastapi errors", 422, jsonH, `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required"},{"type":"int_parsing","loc":["body","fn_index"],"msg":"Input should be a valid integer"}]}`,
			Error{Code: CodeInvalidInput, Status: 422, Message: "body.data: Field required; body.fn_index: Input should be a valid integer"}},
		{"gradio auth", 401, jsonH, `{"detail":{"error":"Not authenticated","auth_message":null}}`,
			Error{Code: CodeUnauthorized, Status: 401, Message: "Not authenticated"}},
		{"file not allowed", 403, jsonH, `{"detail":"File not allowed: /etc/passwd."}`,
			Error{Code: CodeUnauthorized, Status: 403, Message: "File not allowed: /etc/passwd."}},
		{"bad fn_index on call", 500, textH, `Internal Server Error`,
			Error{Code: CodeUnavailable, Status: 500, Message: "Internal Server Error"}},
		{"upload too large", 413, textH, "Request Entity Too Large",
			Error{Code: CodeFileTooLarge, Status: 413, Message: "Request Entity Too Large"}},
		// Hugging Face proxy answers (shaped like them, not captured).
		{"hub json error", 401, jsonH, `{"error":"Invalid credentials in Authorization header"}`,
			Error{Code: CodeUnauthorized, Status: 401, Message: "Invalid credentials in Authorization header"}},
		{"sleeping space page", 503, htmlH, hfPage,
			Error{Code: CodeUnavailable, Status: 503, Message: "503 - Space unavailable"}},
		{"html without title or content type", 404, nil, "<html><body><h1>Not here</h1><script>if (a<b) {}</script><p>Space   is <b>paused</b>.</p></body></html>",
			Error{Code: CodeUnavailable, Status: 404, Message: "Not here Space is paused."}},
		{"rate limited", 429, with(textH, "Retry-After", "120"), "Too Many Requests",
			Error{Code: CodeRateLimited, Status: 429, RetryAfter: 2 * time.Minute, Message: "Too Many Requests"}},
		{"rate limited, date in the past", 429, with(nil, "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"), "",
			Error{Code: CodeRateLimited, Status: 429, Message: "Too many requests."}},
		{"rate limited, bad header", 429, with(nil, "Retry-After", "soon"), "",
			Error{Code: CodeRateLimited, Status: 429, Message: "Too many requests."}},
		{"bad gateway, empty", 502, nil, "",
			Error{Code: CodeUnavailable, Status: 502, Message: "The Space answered with an error."}},
		{"other 4xx", 418, nil, "",
			Error{Code: CodeInvalidInput, Status: 418, Message: "The Space refused the request."}},
		{"404 empty", 404, nil, "",
			Error{Code: CodeUnavailable, Status: 404, Message: "Not found: the Space may not exist or be paused, or the route is missing."}},
		{"json without a message", 400, jsonH, `{"ok":false}`,
			Error{Code: CodeInvalidInput, Status: 400, Message: `{"ok":false}`}},
		{"redirect", 302, nil, "",
			Error{Code: CodeUnavailable, Status: 302, Message: "The Space answered with an error."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := httpError("queue/join", tt.status, tt.header, []byte(tt.body))
			if got.Err == nil || !strings.Contains(got.Err.Error(), "queue/join") {
				t.Errorf("httpError().Err = %v, want it to name the op", got.Err)
			}
			got.Err = nil
			if *got != tt.want {
				t.Errorf("httpError() = %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestHTTPErrorRetryAfterDate(t *testing.T) {
	t.Parallel()
	h := http.Header{"Retry-After": {time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)}}
	got := httpError("config", 429, h, nil).RetryAfter
	if got < 85*time.Second || got > 91*time.Second {
		t.Errorf("RetryAfter = %v, want about 90s", got)
	}
}

func TestHTTPErrorLongBody(t *testing.T) {
	t.Parallel()
	bodies := map[string]string{
		"text":         strings.Repeat("word ", 100000),
		"json":         `{"detail":"` + strings.Repeat("x", 5000) + `"}`,
		"html":         "<html><body>" + strings.Repeat("<p>é</p>", 50000),
		"html title":   "<html><title>" + strings.Repeat("t", 5000) + "</title>",
		"one long tag": "<html><body><a href='" + strings.Repeat("x", 100000),
	}
	for name, body := range bodies {
		got := httpError("queue/join", 500, nil, []byte(body))
		if len(got.Message) > maxBodyMessage+len("…") || !utf8.ValidString(got.Message) {
			t.Errorf("%s: message of %d bytes: %q", name, len(got.Message), got.Message)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("ZeroGPU quota exceeded", "You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in 0:47:10.", 503, []byte(`{"detail":[{"loc":[1,null]}]}`))
	f.Add("Error", "'<a href=x>y</a> &amp; <script>'", 422, []byte(`<html><title>x</title`))
	f.Fuzz(func(t *testing.T, title, msg string, status int, body []byte) {
		e := appError(title, &msg, true)
		if e.Code == "" || e.RetryAfter < 0 {
			t.Fatalf("appError() = %+v", e)
		}
		h := httpError("op", status, http.Header{"Retry-After": {msg}}, body)
		if h.Code == "" || h.RetryAfter < 0 || len(h.Message) > maxBodyMessage+len("…") {
			t.Fatalf("httpError() = %+v", h)
		}
	})
}

// A redacted error keeps what errors.Is sees of it, and not the secret.
func TestRedactKeepsWhatTheErrorIs(t *testing.T) {
	e := &Error{Code: CodeUnavailable, Message: msgSessionLost, Err: fmt.Errorf("stream: token visitor-secret-jwt: %w", ErrSessionLost)}
	redact(e, "visitor-secret-jwt")
	if strings.Contains(e.Error(), "secret") {
		t.Errorf("Error() = %q, want the token out", e.Error())
	}
	if !errors.Is(e, ErrSessionLost) {
		t.Error("the redacted error is no longer ErrSessionLost")
	}
}
