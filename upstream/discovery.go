package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// discoveryTimeout bounds the whole discovery: Hub, config and info.
const discoveryTimeout = time.Minute

// API describes a Gradio app's callable endpoints. It is read once per
// Client and shared; treat it as read-only.
type API struct {
	BaseURL     string // the app root, without a trailing slash
	Version     string // the app's Gradio version
	Protocol    string // "sse_v1" … "sse_v3"
	Prefix      string // the API route prefix: "/gradio_api", or "" before Gradio 5
	MaxFileSize int64  // the app's upload limit in bytes, 0 if none
	Endpoints   []*Endpoint

	legacyQuoted bool // Gradio < 5.2 wraps error texts in '…'
	closeStream  bool // the server ends streams with close_stream (sse_v3)
	diffs        bool // generator updates after the first are edit lists (sse_v2+)
	dequeues     bool // /cancel removes a queued job (Gradio 6.14+)
}

// Endpoint is one API endpoint of the app.
type Endpoint struct {
	Name      string  // the api_name with its leading slash, e.g. "/predict"
	Inputs    []Param // the parameters a caller gives, in order
	Outputs   []Output
	Generator bool // the endpoint yields partial outputs

	fnIndex int
	slots   []int // per input of the function: index into Inputs, or -1 for a null slot (State)
	keep    []int // positions of output data to keep (State outputs dropped)
}

// Param is one input parameter of an endpoint.
type Param struct {
	Name      string `json:"name"`
	Label     string `json:"label,omitempty"`
	Type      string `json:"type"` // string, integer, number, boolean, array, object, file or any
	Component string `json:"component,omitempty"`
	Required  bool   `json:"required"`
	Default   any    `json:"default,omitempty"`
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
	c.mu.Lock()
	api := c.api
	c.mu.Unlock()
	if api != nil {
		return api, nil
	}
	ch := c.discover.DoChan("", func() (any, error) {
		// Not the caller's ctx: one caller giving up must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
		defer cancel()
		api, err := c.fetchAPI(ctx)
		if err == nil {
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

func (c *Client) fetchAPI(ctx context.Context) (*API, error) {
	base, err := c.resolve(ctx)
	if err != nil {
		return nil, err
	}
	var cfg appConfig
	if err := c.getJSON(ctx, base+"/config", "config", &cfg); err != nil {
		return nil, err
	}
	api, err := cfg.api(base)
	if err != nil {
		return nil, err
	}
	var info apiInfo
	if err := c.getJSON(ctx, base+api.Prefix+"/info", "info", &info); err != nil {
		return nil, err
	}
	api.Endpoints = cfg.endpoints(info)
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
	return &Error{Code: CodeUnavailable, Title: "Space not running", Message: "Space " + c.space + " " + why}
}

// appConfig is the part of GET /config that a client needs.
type appConfig struct {
	Version      string          `json:"version"`
	APIPrefix    string          `json:"api_prefix"`
	Protocol     string          `json:"protocol"`
	MaxFileSize  json.Number     `json:"max_file_size"`
	Dependencies []appDependency `json:"dependencies"`
	Components   []appComponent  `json:"components"`
}

type appDependency struct {
	ID            *int   `json:"id"`
	APIName       any    `json:"api_name"` // a string, or false/null on old servers
	APIVisibility string `json:"api_visibility"`
	ShowAPI       *bool  `json:"show_api"`
	Inputs        []int  `json:"inputs"`
	Outputs       []int  `json:"outputs"`
	Queue         *bool  `json:"queue"`
	Types         struct {
		Generator bool `json:"generator"`
	} `json:"types"`
}

type appComponent struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	SkipAPI bool   `json:"skip_api"`
}

var protocols = map[string]bool{"sse_v1": true, "sse_v2": true, "sse_v2.1": true, "sse_v3": true}

func (cfg *appConfig) api(base string) (*API, error) {
	if !protocols[cfg.Protocol] {
		return nil, &Error{Code: CodeUnavailable, Title: "Gradio too old",
			Message: fmt.Sprintf("the app speaks protocol %q (Gradio %s); spacerelay needs sse_v1 or newer (Gradio 4.9+)", cfg.Protocol, cfg.Version)}
	}
	api := &API{
		BaseURL:      base,
		Version:      cfg.Version,
		Protocol:     cfg.Protocol,
		Prefix:       strings.TrimRight(cfg.APIPrefix, "/"),
		legacyQuoted: versionLess(cfg.Version, 5, 2),
		closeStream:  cfg.Protocol == "sse_v3",
		diffs:        cfg.Protocol != "sse_v1",
		dequeues:     !versionLess(cfg.Version, 6, 14),
	}
	if n, err := cfg.MaxFileSize.Int64(); err == nil && n > 0 {
		api.MaxFileSize = n
	}
	return api, nil
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

// apiInfo is GET {prefix}/info.
type apiInfo struct {
	NamedEndpoints map[string]struct {
		Parameters []struct {
			Label      string                `json:"label"`
			Name       string                `json:"parameter_name"`
			HasDefault bool                  `json:"parameter_has_default"`
			Default    any                   `json:"parameter_default"`
			Type       json.RawMessage       `json:"type"`
			PythonType struct{ Type string } `json:"python_type"`
			Component  string                `json:"component"`
		} `json:"parameters"`
		Returns []struct {
			Label     string `json:"label"`
			Component string `json:"component"`
		} `json:"returns"`
	} `json:"named_endpoints"`
}

// endpoints joins the config's dependencies with the info's parameters.
// Only public, queued endpoints that /info documents are listed.
func (cfg *appConfig) endpoints(info apiInfo) []*Endpoint {
	skip := make(map[int]bool, len(cfg.Components))
	for _, comp := range cfg.Components {
		skip[comp.ID] = comp.SkipAPI || comp.Type == "state"
	}
	var eps []*Endpoint
	for i, dep := range cfg.Dependencies {
		name, ok := dep.APIName.(string)
		if !ok || name == "" || dep.APIVisibility == "private" || (dep.Queue != nil && !*dep.Queue) {
			continue
		}
		doc, ok := info.NamedEndpoints["/"+name]
		if !ok {
			continue
		}
		ep := &Endpoint{Name: "/" + name, Generator: dep.Types.Generator, fnIndex: i}
		if dep.ID != nil {
			ep.fnIndex = *dep.ID
		}
		for _, p := range doc.Parameters {
			ep.Inputs = append(ep.Inputs, Param{
				Name: p.Name, Label: p.Label, Component: p.Component,
				Type:     paramType(p.Type, p.PythonType.Type),
				Required: !p.HasDefault, Default: p.Default,
			})
		}
		n := 0
		for _, id := range dep.Inputs {
			if skip[id] || n >= len(ep.Inputs) {
				ep.slots = append(ep.slots, -1)
				continue
			}
			ep.slots = append(ep.slots, n)
			n++
		}
		for j, id := range dep.Outputs {
			if !skip[id] {
				ep.keep = append(ep.keep, j)
			}
		}
		for j, r := range doc.Returns {
			name := r.Label
			if name == "" {
				name = fmt.Sprintf("output %d", j)
			}
			ep.Outputs = append(ep.Outputs, Output{Name: name, Component: r.Component})
		}
		eps = append(eps, ep)
	}
	sort.SliceStable(eps, func(i, j int) bool { return eps[i].Name < eps[j].Name })
	return eps
}

// paramType reduces a JSON schema to one word a browser can use.
func paramType(schema json.RawMessage, pyType string) string {
	var s struct {
		Type       any            `json:"type"`
		Properties map[string]any `json:"properties"`
	}
	_ = json.Unmarshal(schema, &s)
	if _, ok := s.Properties["path"]; ok || pyType == "filepath" {
		return "file"
	}
	switch t := s.Type.(type) {
	case string:
		switch t {
		case "string", "integer", "number", "boolean", "array", "object":
			return t
		}
	}
	return "any"
}
