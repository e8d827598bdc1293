package upstream

import (
	"encoding/json"
	"fmt"
	"html"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on the text an *Error carries.
const (
	maxAppMessage  = 2000     // bytes of an app's error message
	maxBodyMessage = 200      // bytes of an HTTP body quoted in a message
	maxBodyRead    = 64 << 10 // bytes of an HTTP body looked at
)

// msgHidden is the Message of an app error whose text the app hides
// (show_error=False, the default, also on Spaces).
const msgHidden = "The Space's app failed and does not show why."

// appError classifies a failed process_completed or process_generating:
// title is the message's title ("" if none), msg its output.error (nil when
// the app hides its errors), and legacyQuoted says the server is older than
// Gradio 5.2, which sent the Python repr of the message.
//
// The text is made readable: one level of repr quoting is undone (with its
// escapes \n, \t, \', \", \\) when legacyQuoted, HTML tags are stripped,
// entities decoded and whitespace collapsed, and it is cut to about 2000
// bytes. ZeroGPU's errors (GRADIO.md 6.4) get their own codes, and a
// quota's "Try again in H:MM:SS" becomes RetryAfter. The hints that
// ZeroGPU adds for API callers ("Subscribe to Hugging Face PRO…",
// "Authenticate with a Hugging Face token…", "Add credits…", with their
// URLs) are dropped: they are addressed to whoever holds the API token, the
// relay's operator, and the Space's own page does not show them to the
// visitor. Everything else is a CodeAppError with the title and message
// as given.
func appError(title string, msg *string, legacyQuoted bool) *Error {
	e := &Error{Code: CodeAppError, Title: cleanText(title), Message: msgHidden}
	text := ""
	if msg != nil {
		text = *msg
		if legacyQuoted {
			text = unquoteRepr(strings.TrimSpace(text))
		}
		text = cleanText(text)
		e.Message = truncate(stripAPIHint(text), maxAppMessage)
	}
	e.Code = zeroGPUCode(e.Title, text)
	if e.Code == CodeQuotaExceeded {
		e.RetryAfter = retryAfter(text)
	}
	return e
}

// zeroGPUCode classifies the cleaned title and text of an app error.
func zeroGPUCode(title, text string) Code {
	title, text = strings.ToLower(title), strings.ToLower(text)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(text, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("expired zerogpu proxy token"):
		return CodeTokenExpired
	case title == "zerogpu illegal duration",
		has("gpu duration") && has("larger than the maximum allowed"):
		return CodeInvalidInput
	// Before the quota texts: spaces reports a GPU-queue timeout of a
	// request without a token under the title "ZeroGPU quota exceeded".
	case has("no gpu was available", "no gpu is currently available",
		"gpu task aborted", "too many zerogpu credits"):
		return CodeGPUUnavailable
	case has("exceeded your") && has("gpu quota", "runs limit"),
		has("reached its gpu limit", "zerogpu runs limit"):
		return CodeQuotaExceeded
	case title == "zerogpu queue timeout", title == "zerogpu pending credits exceeded":
		return CodeGPUUnavailable
	case title == "zerogpu quota exceeded":
		return CodeQuotaExceeded
	}
	return CodeAppError
}

// retryRE matches ZeroGPU's wait, a Python str(timedelta).
// Days are capped at 5 digits so that the sum cannot overflow.
var retryRE = regexp.MustCompile(`(?i)(?:try again|retry) in (?:(\d{1,5}) days?, )?(\d{1,2}):(\d\d):(\d\d)(?:\.(\d+))?`)

// retryAfter returns the wait that text asks for, or 0.
func retryAfter(text string) time.Duration {
	m := retryRE.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	num := func(s string) time.Duration {
		n, _ := strconv.Atoi(s) // "" is 0; the regexp allows no more digits than fit
		return time.Duration(n)
	}
	d := num(m[1])*24*time.Hour + num(m[2])*time.Hour + num(m[3])*time.Minute + num(m[4])*time.Second
	if frac := m[5]; frac != "" {
		frac = (frac + "000000000")[:9]
		d += num(frac)
	}
	return d
}

// apiHints start the sentences ZeroGPU appends for API callers.
var apiHints = []string{
	"Subscribe to Hugging Face PRO",
	"Authenticate with a Hugging Face token",
	"Add credits to keep using ZeroGPU",
}

// stripAPIHint drops a trailing API hint from ZeroGPU's text.
func stripAPIHint(s string) string {
	for _, h := range apiHints {
		if i := strings.Index(s, h); i > 0 {
			return strings.TrimSpace(s[:i])
		}
	}
	return s
}

// unquoteRepr undoes one level of Python repr quoting of a str.
func unquoteRepr(s string) string {
	if len(s) < 2 || s[0] != s[len(s)-1] || s[0] != '\'' && s[0] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				c = '\n'
			case 't':
				c = '\t'
			case 'r':
				c = '\r'
			case '\\', '\'', '"':
				c = s[i+1]
			default:
				b.WriteByte(c)
				continue
			}
			i++
		}
		b.WriteByte(c)
	}
	return b.String()
}

// httpError classifies a non-2xx answer to the request op (for example
// "queue/join"). Status is set, Err says op and the status, and Message is
// taken from the body: Gradio's and FastAPI's {"detail": …} (validation
// lists name the parameter), another JSON "error" or "message", or the text
// of a plain or HTML body (an HTML page's <title> if it has one), never more
// than about 200 bytes of it.
//
// 503 is CodeQueueFull when the body is Gradio's JSON detail (other than
// "Queue is stopped.", which is CodeUnavailable); a 503 without it comes
// from the Hugging Face proxy (a sleeping or starting Space) and is
// CodeUnavailable. RetryAfter is read from a Retry-After header on 429 and
// 503.
func httpError(op string, status int, header http.Header, body []byte) *Error {
	e := &Error{
		Status: status,
		Err:    fmt.Errorf("%s: %d %s", op, status, http.StatusText(status)),
	}
	detail, isJSON := bodyMessage(header, body)
	var fallback string
	switch {
	case status == http.StatusServiceUnavailable:
		e.Code, fallback = CodeUnavailable, "The Space is not available right now."
		if isJSON && detail != "" && !strings.EqualFold(detail, "Queue is stopped.") {
			e.Code = CodeQueueFull
		}
	case status == http.StatusUnprocessableEntity:
		e.Code, fallback = CodeInvalidInput, "The Space refused the inputs."
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		e.Code, fallback = CodeUnauthorized, "The Space refused access: it may be private, or need a login."
	case status == http.StatusNotFound:
		e.Code, fallback = CodeUnavailable, "Not found: the Space may not exist or be paused, or the route is missing."
	case status == http.StatusTooManyRequests:
		e.Code, fallback = CodeRateLimited, "Too many requests."
	case status == http.StatusRequestEntityTooLarge:
		e.Code, fallback = CodeFileTooLarge, "The upload is too large."
	case status >= 400 && status < 500:
		e.Code, fallback = CodeInvalidInput, "The Space refused the request."
	default:
		e.Code, fallback = CodeUnavailable, "The Space answered with an error."
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(header.Get("Retry-After"))
	}
	e.Message = detail
	if e.Message == "" {
		e.Message = fallback
	}
	return e
}

// bodyMessage returns the readable text of an error body, and whether it
// was JSON with a message field.
func bodyMessage(header http.Header, body []byte) (string, bool) {
	body = body[:min(len(body), maxBodyRead)]
	var j struct {
		Detail  json.RawMessage `json:"detail"`
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &j) == nil {
		for _, raw := range []json.RawMessage{j.Detail, j.Error, j.Message} {
			if s := jsonDetail(raw); s != "" {
				return truncate(cleanText(s), maxBodyMessage), true
			}
		}
	}
	text := string(body)
	ct, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	if ct == "text/html" || looksLikeHTML(text) {
		if t := cleanText(htmlTitle(text)); t != "" {
			return truncate(t, maxBodyMessage), false
		}
		return truncate(cleanText(text), maxBodyMessage), false
	}
	// Cut before cleaning, so that a huge body costs no more than its start.
	text = strings.Join(strings.Fields(truncate(text, 4*maxBodyMessage)), " ")
	return truncate(text, maxBodyMessage), false
}

// jsonDetail turns a detail value into text: a string as is; a list of
// Gradio validation results or FastAPI errors as "name: message; …"; an
// object by its "error" or "msg" or "message".
func jsonDetail(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj detailItem
	if json.Unmarshal(raw, &obj) == nil {
		return obj.text()
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return ""
	}
	var parts []string
	for i, r := range list {
		var it detailItem
		if json.Unmarshal(r, &it) != nil {
			continue
		}
		if it.Type == "validate" && it.IsValid != nil && *it.IsValid {
			continue
		}
		name := it.Param
		if name == "" && it.Type == "validate" {
			name = fmt.Sprintf("parameter_%d", i)
		}
		if name == "" {
			name = it.location()
		}
		if t := it.text(); t != "" && name != "" {
			parts = append(parts, name+": "+t)
		} else if t != "" {
			parts = append(parts, t)
		}
	}
	return strings.Join(parts, "; ")
}

// detailItem is one element of a 422 detail list, or a detail object.
type detailItem struct {
	// Gradio validators (5.45+).
	Type    string `json:"__type__"`
	IsValid *bool  `json:"is_valid"`
	Message string `json:"message"`
	Param   string `json:"parameter_name"`
	// FastAPI.
	Loc []any  `json:"loc"`
	Msg string `json:"msg"`
	// Gradio's auth ({"error": "Not authenticated", …}).
	Error string `json:"error"`
}

func (it detailItem) text() string {
	for _, s := range []string{it.Message, it.Msg, it.Error} {
		if s != "" {
			return s
		}
	}
	return ""
}

// location renders a FastAPI loc such as ["body", "data", 0].
func (it detailItem) location() string {
	parts := make([]string, 0, len(it.Loc))
	for _, p := range it.Loc {
		parts = append(parts, fmt.Sprint(p))
	}
	return strings.Join(parts, ".")
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 32); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t).Round(time.Second), 0)
	}
	return 0
}

func looksLikeHTML(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s[:min(len(s), 512)]))
	return strings.HasPrefix(s, "<!doctype html") || strings.HasPrefix(s, "<html") ||
		strings.Contains(s, "<head") || strings.Contains(s, "<body")
}

// htmlTitle returns the raw content of the page's <title>, or "".
func htmlTitle(s string) string {
	i := indexFold(s, "<title")
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(s[i:], '>')
	if j < 0 {
		return ""
	}
	s = s[i+j+1:]
	if end := indexFold(s, "</title"); end >= 0 {
		return s[:end]
	}
	return ""
}

// indexFold is strings.Index ignoring ASCII case; sub must be lower case.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && lowerASCII(s[i+j]) == sub[j] {
			j++
		}
		if j == len(sub) {
			return i
		}
	}
	return -1
}

// cleanText turns an HTML or plain-text snippet into one line of text:
// tags (and the content of script and style elements) are removed,
// entities decoded and runs of white space turned into one space.
func cleanText(s string) string {
	if strings.ContainsAny(s, "<&") {
		s = html.UnescapeString(stripTags(s))
	}
	return strings.Join(strings.Fields(s), " ")
}

// inlineTags are the tags that do not separate words.
var inlineTags = map[string]bool{
	"a": true, "b": true, "i": true, "u": true, "em": true, "strong": true,
	"span": true, "code": true, "small": true, "sub": true, "sup": true,
	"mark": true, "s": true, "kbd": true,
}

// stripTags removes the tags of s, keeping a '<' that starts no tag.
func stripTags(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 || i+1 >= len(s) {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		s = s[i:]
		c := s[1]
		isTag := c == '/' || c == '!' || c == '?' || 'a' <= c|0x20 && c|0x20 <= 'z'
		end := strings.IndexByte(s, '>')
		if !isTag || end < 0 {
			b.WriteByte('<')
			s = s[1:]
			continue
		}
		if strings.HasPrefix(s, "<!--") {
			if k := strings.Index(s, "-->"); k >= 0 {
				end = k + 2
			}
		}
		name := tagName(s[1:end])
		s = s[end+1:]
		if c != '/' && (name == "script" || name == "style") {
			if k := indexFold(s, "</"+name); k >= 0 {
				s = s[k:]
			} else {
				s = ""
			}
			continue
		}
		if !inlineTags[name] {
			b.WriteByte(' ')
		}
	}
}

// tagName returns the lower-case name of the tag whose text (between < and
// >) is t.
func tagName(t string) string {
	t = strings.TrimPrefix(t, "/")
	n := 0
	for n < len(t) && ('a' <= t[n]|0x20 && t[n]|0x20 <= 'z' || '0' <= t[n] && t[n] <= '9') {
		n++
	}
	return strings.ToLower(t[:n])
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// truncate cuts s to at most n bytes (plus "…") on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.TrimSpace(s[:n]) + "…"
}
