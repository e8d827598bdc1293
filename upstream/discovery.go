package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// discoveryTimeout bounds the whole discovery: Hub, config and info.
const discoveryTimeout = time.Minute

// API describes a Gradio app's callable endpoints. It is read once per
// Client and shared; treat it as read-only. A rediscovery that finds the
// app changed makes a new API and leaves this one as it was.
type API struct {
	BaseURL     string // the app root, without a trailing slash
	Version     string // the app's Gradio version
	Protocol    string // "sse_v1" … "sse_v3"
	Prefix      string // the API route prefix: "/gradio_api", or "" before Gradio 5
	MaxFileSize int64  // the app's upload limit in bytes, 0 if none
	Endpoints   []*Endpoint
	// Skipped lists the public endpoints that could not be described, and
	// so are not in Endpoints, with why: for a log line each.
	Skipped []SkippedEndpoint

	legacyQuoted bool // Gradio < 5.2 wraps error texts in '…'
	closeStream  bool // the server ends streams with close_stream (sse_v3)
	diffs        bool // generator updates after the first are edit lists (sse_v2+)
	dequeues     bool // /cancel removes a queued job (Gradio 6.14+)

	fingerprint [sha256.Size]byte // of the /config this API was read from
}

// SkippedEndpoint is a public endpoint that discovery left out.
type SkippedEndpoint struct {
	Name   string // the api_name with its leading slash
	Reason string // for a log: what could not be read, and where
}

// Endpoint is one API endpoint of the app. Its JSON form is what a page is
// told about it.
type Endpoint struct {
	Name      string   `json:"name"`   // the api_name with its leading slash, e.g. "/predict"
	Inputs    []Param  `json:"inputs"` // the parameters a caller gives, in order; never nil
	Outputs   []Output `json:"outputs"`
	Generator bool     `json:"generator,omitempty"` // the endpoint yields partial outputs
	// Queue is false for an event that does not use Gradio's queue
	// (queue=False): it is called with one direct request, not joined.
	Queue bool `json:"-"`

	fnIndex int
	slots   []int // per input of the function: index into Inputs, or -1 for a null slot (State)
	keep    []int // positions of output data to keep (State outputs dropped)
}

// Param is one input parameter of an endpoint. Fields other than Name,
// Type and Required are left out of its JSON when the app does not say.
type Param struct {
	Name      string `json:"name"`
	Label     string `json:"label,omitempty"`
	Type      string `json:"type"` // string, integer, number, boolean, array, object, file or any
	Component string `json:"component,omitempty"`
	Required  bool   `json:"required"`
	Default   any    `json:"default,omitempty"`
	// Info is the component's help text.
	Info string `json:"info,omitempty"`
	// Choices are a Dropdown's, Radio's or CheckboxGroup's.
	Choices []Choice `json:"choices,omitempty"`
	// Minimum, Maximum and Step are a Slider's or Number's.
	Minimum *float64 `json:"minimum,omitempty"`
	Maximum *float64 `json:"maximum,omitempty"`
	Step    *float64 `json:"step,omitempty"`
	// FileTypes is what an upload for it should accept: "image", "audio"
	// or "video" for those components; a Gallery's or a File's own list,
	// such as ".png" and ".jpg", or without one "image" and "video" for a
	// Gallery and "file" (any file) for a File.
	FileTypes []string `json:"file_types,omitempty"`
	// Schema is the JSON schema /info gives for the parameter's value.
	Schema json.RawMessage `json:"schema,omitempty"`

	schema *jsonschema.Schema // Schema compiled, or nil: the value is not checked
	files  *fileForm          // how it takes a file, read at discovery; nil for a Param made by hand
}

// Output is one output of an endpoint.
type Output struct {
	Name      string `json:"name"`
	Component string `json:"component,omitempty"`
}

// Endpoint returns the endpoint called name ("/predict"). An empty name
// means the only endpoint, when there is exactly one.
func (a *API) Endpoint(name string) (*Endpoint, error) {
	if name == "" {
		if len(a.Endpoints) == 1 {
			return a.Endpoints[0], nil
		}
		return nil, &Error{Code: CodeUnknownEndpoint, Message: fmt.Sprintf("no endpoint given, and the app has %d", len(a.Endpoints))}
	}
	for _, ep := range a.Endpoints {
		if ep.Name == name {
			return ep, nil
		}
	}
	return nil, &Error{Code: CodeUnknownEndpoint, Message: fmt.Sprintf("the app has no endpoint %q", name)}
}

// API returns the app's API description, fetching it on first use. A
// failure is not cached: the next call tries again.
func (c *Client) API(ctx context.Context) (*API, error) {
	if api := c.cachedAPI(); api != nil {
		return api, nil
	}
	return c.discoverShared(ctx)
}

// discoverShared runs one discovery for all the callers that want one at
// the same time: it reads /config, and /info too unless the app is the
// one the cached API came from.
func (c *Client) discoverShared(ctx context.Context) (*API, error) {
	ch := c.discover.DoChan("", func() (any, error) {
		// Not the caller's ctx: one caller giving up must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
		defer cancel()
		old := c.cachedAPI()
		api, err := c.fetchAPI(ctx, old)
		if err == nil && api != old {
			c.mu.Lock()
			c.api = api
			c.mu.Unlock()
		}
		return api, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*API), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetchAPI reads the app's API. If old, the API the Client has, was read
// from the same /config, it returns old without asking for /info.
func (c *Client) fetchAPI(ctx context.Context, old *API) (*API, error) {
	base, err := c.resolve(ctx)
	if err != nil {
		return nil, err
	}
	var cfg appConfig
	if err := c.getJSON(ctx, base+"/config", "config", &cfg); err != nil {
		return nil, err
	}
	fp := cfg.fingerprint(base)
	if old != nil && old.fingerprint == fp {
		return old, nil
	}
	api, err := cfg.api(base)
	if err != nil {
		return nil, err
	}
	var info apiInfo
	if err := c.getJSON(ctx, base+api.Prefix+"/info", "info", &info); err != nil {
		return nil, err
	}
	api.Endpoints, api.Skipped = cfg.endpoints(info)
	api.fingerprint = fp
	return api, nil
}

// resolve returns the app's root URL, asking the Hub for a Space id.
func (c *Client) resolve(ctx context.Context) (string, error) {
	if c.base != nil {
		return strings.TrimRight(c.base.String(), "/"), nil
	}
	var host struct {
		Host string `json:"host"`
	}
	err := c.hubJSON(ctx, "/host", &host)
	if e, ok := err.(*Error); ok && (e.Status == 401 || e.Status == 404) {
		msg := "Space " + c.space + " does not exist, or it is private and HF_TOKEN is missing or has no access"
		return "", &Error{Code: CodeUnauthorized, Message: msg, Status: e.Status}
	}
	if err != nil {
		return "", err
	}
	u, perr := url.Parse(host.Host)
	if perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", &Error{Code: CodeUnavailable, Message: fmt.Sprintf("the Hub gave Space %s no usable host", c.space)}
	}
	if err := c.checkRuntime(ctx); err != nil {
		return "", err
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// hubJSON GETs a Space's Hub API path. The Hub takes the HF token as
// Authorization (X-HF-Authorization is for the Space's proxy).
func (c *Client) hubJSON(ctx context.Context, path string, v any) error {
	req, err := c.request(ctx, http.MethodGet, c.cfg.HubURL+"/api/spaces/"+c.space+path, nil, nil)
	if err != nil {
		return err
	}
	if tok := req.Header.Get("X-Hf-Authorization"); tok != "" {
		req.Header.Del("X-Hf-Authorization")
		req.Header.Set("Authorization", tok)
	}
	resp, err := c.do(req, "hub")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp.Body, "hub", v)
}

// checkRuntime refuses a Space that is not running, with a reason a person
// can act on. A Hub that does not answer is not a reason to refuse.
func (c *Client) checkRuntime(ctx context.Context) error {
	var rt struct {
		Stage string `json:"stage"`
	}
	if c.hubJSON(ctx, "/runtime", &rt) != nil {
		return nil
	}
	var why string
	switch rt.Stage {
	case "", "RUNNING", "RUNNING_BUILDING":
		return nil
	case "SLEEPING", "STOPPED":
		why = "is asleep; it wakes when someone opens its page on huggingface.co, which takes a minute or so"
	case "BUILDING", "APP_STARTING", "RUNNING_APP_STARTING":
		why = "is starting; try again in a minute"
	case "PAUSED":
		why = "is paused by its owner"
	default: // NO_APP_FILE, CONFIG_ERROR, BUILD_ERROR, RUNTIME_ERROR, …
		why = "is broken (" + strings.ToLower(rt.Stage) + "); its owner must fix it"
	}
	return &Error{Code: CodeUnavailable, Title: "Space not running", Message: "Space " + c.space + " " + why, Stage: rt.Stage}
}

// versionLess reports whether version v is older than major.minor.
func versionLess(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma < major || ma == major && mi < minor
}
