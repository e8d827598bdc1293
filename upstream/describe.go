package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// appConfig is the part of GET /config that a client needs. Its lists are
// kept raw and read one item at a time, so that an item of an unexpected
// shape costs only the endpoints that use it, and so that a rediscovery
// can tell an unchanged app without reading them (see fingerprint).
type appConfig struct {
	Version      string            `json:"version"`
	APIPrefix    string            `json:"api_prefix"`
	Protocol     string            `json:"protocol"`
	MaxFileSize  json.RawMessage   `json:"max_file_size"` // bytes, or null
	AppID        json.RawMessage   `json:"app_id"`
	Translations json.RawMessage   `json:"i18n_translations"`
	Dependencies []json.RawMessage `json:"dependencies"`
	Components   []json.RawMessage `json:"components"`
}

type appDependency struct {
	ID            *int   `json:"id"`
	APIName       any    `json:"api_name"` // a string, or false/null on old servers
	APIVisibility string `json:"api_visibility"`
	Inputs        []int  `json:"inputs"`
	Outputs       []int  `json:"outputs"`
	Queue         *bool  `json:"queue"`
	Types         struct {
		Generator bool `json:"generator"`
	} `json:"types"`
}

type appComponent struct {
	ID      int             `json:"id"`
	Type    string          `json:"type"`
	SkipAPI bool            `json:"skip_api"`
	Props   json.RawMessage `json:"props"`
}

// hidden reports whether the component is left out of /info's parameters
// and returns, while the function still has a slot for it (State, Button).
func (c appComponent) hidden() bool { return c.SkipAPI || c.Type == "state" }

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
	var limit float64
	if json.Unmarshal(cfg.MaxFileSize, &limit) == nil && limit > 0 {
		api.MaxFileSize = int64(limit)
	}
	return api, nil
}

// apiInfo is GET {prefix}/info. Each endpoint is read on its own.
type apiInfo struct {
	NamedEndpoints map[string]json.RawMessage `json:"named_endpoints"`
}

// endpointDoc is one endpoint of /info. Descriptive fields are read
// leniently; the fields that calling the endpoint depends on are not.
type endpointDoc struct {
	Parameters []struct {
		Label      text            `json:"label"`
		Name       string          `json:"parameter_name"`
		HasDefault bool            `json:"parameter_has_default"`
		Default    any             `json:"parameter_default"`
		Type       json.RawMessage `json:"type"`
		PythonType json.RawMessage `json:"python_type"`
		Component  text            `json:"component"`
	} `json:"parameters"`
	Returns []struct {
		Label     text `json:"label"`
		Component text `json:"component"`
	} `json:"returns"`
}

// pythonType reads the type word of a parameter's python_type,
// {"type":"filepath",…}, or "" if it has none.
func pythonType(raw json.RawMessage) string {
	var pt struct {
		Type text `json:"type"`
	}
	_ = json.Unmarshal(raw, &pt)
	return pt.Type.s
}

// endpoints joins the config's dependencies with the info's endpoints:
// every public endpoint that /info documents, queued or not. An endpoint
// that cannot be described is left out and reported in skipped.
func (cfg *appConfig) endpoints(info apiInfo) (eps []*Endpoint, skipped []SkippedEndpoint) {
	comps := cfg.components()
	tr := readTranslations(cfg.Translations)
	described := make(map[string]bool, len(info.NamedEndpoints))
	for i, raw := range cfg.Dependencies {
		name, dep, err := readDependency(raw)
		doc, documented := info.NamedEndpoints[name]
		if name == "" || !documented {
			continue // private, or not documented: not for callers
		}
		described[name] = true
		var ep *Endpoint
		if err == nil {
			ep, err = newEndpoint(name, i, dep, doc, comps, tr)
		}
		if err != nil {
			skipped = append(skipped, SkippedEndpoint{Name: name, Reason: err.Error()})
			continue
		}
		eps = append(eps, ep)
	}
	for name := range info.NamedEndpoints {
		if !described[name] {
			skipped = append(skipped, SkippedEndpoint{Name: name, Reason: "/info documents it, but /config has no public event of that name"})
		}
	}
	sort.SliceStable(eps, func(i, j int) bool { return eps[i].Name < eps[j].Name })
	sort.Slice(skipped, func(i, j int) bool { return skipped[i].Name < skipped[j].Name })
	return eps, skipped
}

// components reads the config's components by id; one that cannot be
// read is left out, and reads as a plain visible input.
func (cfg *appConfig) components() map[int]appComponent {
	comps := make(map[int]appComponent, len(cfg.Components))
	for _, raw := range cfg.Components {
		var c appComponent
		if json.Unmarshal(raw, &c) == nil {
			comps[c.ID] = c
		}
	}
	return comps
}

// readDependency reads one of the config's dependencies. name is its
// api_name with a leading slash, or "" when it has none or is private;
// it is read apart, so that a dependency that cannot be read can still be
// named in Skipped.
func readDependency(raw json.RawMessage) (name string, dep appDependency, err error) {
	var head struct {
		APIName       any `json:"api_name"`
		APIVisibility any `json:"api_visibility"`
	}
	_ = json.Unmarshal(raw, &head)
	if s, ok := head.APIName.(string); ok && s != "" && head.APIVisibility != "private" {
		name = "/" + s
	}
	if err := json.Unmarshal(raw, &dep); err != nil {
		return name, dep, fmt.Errorf("its event in /config cannot be read: %v", err)
	}
	return name, dep, nil
}

// newEndpoint describes the endpoint of dependency number index, from
// its event in /config and its documentation in /info.
func newEndpoint(name string, index int, dep appDependency, raw json.RawMessage, comps map[int]appComponent, tr translations) (*Endpoint, error) {
	var doc endpointDoc
	if err := decodeNumbers(raw, &doc); err != nil {
		return nil, fmt.Errorf("its description in /info cannot be read: %v", err)
	}
	ep := &Endpoint{
		Name: name, Generator: dep.Types.Generator, Queue: dep.Queue == nil || *dep.Queue,
		fnIndex: index, Inputs: []Param{}, Outputs: []Output{},
	}
	if dep.ID != nil {
		ep.fnIndex = *dep.ID
	}
	if err := ep.setInputs(dep.Inputs, &doc, comps, tr); err != nil {
		return nil, err
	}
	ep.setOutputs(dep.Outputs, &doc, comps, tr)
	return ep, nil
}

// setInputs lays the function's inputs (component ids) out as slots, and
// describes its parameters: one per visible input, in order.
func (ep *Endpoint) setInputs(inputs []int, doc *endpointDoc, comps map[int]appComponent, tr translations) error {
	var visible []int // the component ids of the parameters, in order
	for _, id := range inputs {
		if comps[id].hidden() {
			ep.slots = append(ep.slots, -1)
			continue
		}
		ep.slots = append(ep.slots, len(visible))
		visible = append(visible, id)
	}
	if len(visible) != len(doc.Parameters) {
		return fmt.Errorf("/info gives it %d parameters, but its event in /config has %d visible inputs", len(doc.Parameters), len(visible))
	}
	for k, d := range doc.Parameters {
		p := Param{
			Name: d.Name, Label: d.Label.in(tr), Component: d.Component.s,
			Type:     paramType(d.Type, pythonType(d.PythonType)),
			Required: !d.HasDefault, Default: d.Default,
		}
		if c, ok := comps[visible[k]]; ok {
			p.describe(c.Type, readProps(c.Props), tr)
		}
		p.setSchema(d.Type)
		files := readFileForm(p.schema, p.Component)
		p.files = &files
		if p.Type == "object" && !files.list && len(files.wraps) > 0 {
			// One file in an object of its own (Gradio 5's Video): to a
			// page it is a file, which the relay wraps (PlaceFiles).
			p.Type = "file"
		}
		ep.Inputs = append(ep.Inputs, p)
	}
	return nil
}

// setOutputs keeps the positions of the function's visible outputs and
// names them.
func (ep *Endpoint) setOutputs(outputs []int, doc *endpointDoc, comps map[int]appComponent, tr translations) {
	for j, id := range outputs {
		if !comps[id].hidden() {
			ep.keep = append(ep.keep, j)
		}
	}
	for j, r := range doc.Returns {
		label := r.Label.in(tr)
		if label == "" {
			label = fmt.Sprintf("output %d", j)
		}
		ep.Outputs = append(ep.Outputs, Output{Name: label, Component: r.Component.s})
	}
}

// decodeNumbers decodes raw into v with numbers kept as json.Number.
func decodeNumbers(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
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
