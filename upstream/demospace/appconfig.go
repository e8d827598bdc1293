package demospace

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// Component ids, as in the Blocks of testdata/gradio/app.py.
const (
	idTabGenerate = iota + 1
	idPrompt
	idSteps
	idWidth
	idHeight
	idGenerateButton
	idImage
	idInfo
	idGenerateForm
	idInfoForm
	idTabPreview
	idPreviewPrompt
	idPreviewSteps
	idPreviewButton
	idPreviewImage
	idPreviewForm
	idTabCount
	idState
	idCount
	idCountButton
	idCountForm
	idTabWhoami
	idToken
	idWhoamiButton
	idTokenForm
	idTabs
	// Added after the four endpoints above (see components.go).
	idTabReset
	idResetButton
	idTabRestyle
	idRestyleImage
	idRestylePrompt
	idStrength
	idStyle
	idRestyleButton
	idRestyled
	idRestyleInfo
	idRestyleForm
	idRestyleInfoForm
	idTabChat
	idHistory
	idMessage
	idWords
	idChatForm
	idTabChatInterface
	idChatText
	idChatState
	idChatResponse
	idChatButton
	idChatForm2
	idTabTicks
	idTicksN
	idTick
	idTicksButton
	idTicksForm
	idTabGallery // the file endpoints (media.go)
	idGallery
	idGalleryOut
	idGalleryButton
	idGalleryForm
	idTabFiles
	idFiles
	idFilesOut
	idFilesButton
	idFilesForm
	idTabAudio
	idAudio
	idAudioOut
	idAudioButton
	idAudioForm
	idTabVideo
	idVideo
	idVideoOut
	idVideoButton
	idVideoForm
)

// node is one element of the layout tree.
type node struct {
	id       int
	children []node
}

var layout = node{0, []node{{idTabs, append([]node{
	{idTabGenerate, []node{
		{idGenerateForm, []node{{idPrompt, nil}, {idSteps, nil}, {idWidth, nil}, {idHeight, nil}}},
		{idGenerateButton, nil}, {idImage, nil}, {idInfoForm, []node{{idInfo, nil}}},
	}},
	{idTabPreview, []node{
		{idPreviewForm, []node{{idPreviewPrompt, nil}, {idPreviewSteps, nil}}},
		{idPreviewButton, nil}, {idPreviewImage, nil},
	}},
	{idTabCount, []node{{idState, nil}, {idCountForm, []node{{idCount, nil}}}, {idCountButton, nil}}},
	{idTabWhoami, []node{{idTokenForm, []node{{idToken, nil}}}, {idWhoamiButton, nil}}},
	{idTabReset, []node{{idResetButton, nil}}},
	{idTabRestyle, []node{
		{idRestyleImage, nil},
		{idRestyleForm, []node{{idRestylePrompt, nil}, {idStrength, nil}, {idStyle, nil}}},
		{idRestyleButton, nil}, {idRestyled, nil}, {idRestyleInfoForm, []node{{idRestyleInfo, nil}}},
	}},
	{idTabChat, []node{{idHistory, nil}, {idChatForm, []node{{idMessage, nil}, {idWords, nil}}}}},
	{idTabChatInterface, []node{{idChatForm2, []node{{idChatText, nil}}}, {idChatButton, nil},
		{idChatResponse, nil}, {idChatState, nil}}},
	{idTabTicks, []node{{idTicksForm, []node{{idTicksN, nil}, {idTick, nil}}}, {idTicksButton, nil}}},
}, mediaLayout()...)}}}

func (n node) json() object {
	o := object{{"id", n.id}}
	if n.children != nil {
		kids := make([]any, len(n.children))
		for i, c := range n.children {
			kids[i] = c.json()
		}
		o = append(o, member{"children", kids})
	}
	return o
}

// component is one block of the config, with its API description when it
// is not skip_api.
type component struct {
	id      int
	typ     string // config "type"
	props   object
	api     any // api_info; nil for skip_api blocks
	example any // example_inputs
}

// components are the blocks of the app, in id order.
var components = append([]component{
	tab(idTabGenerate, "generate"),
	textbox(idPrompt, "prompt"),
	numberBox(idSteps, "steps", 8),
	numberBox(idWidth, "width", 128),
	numberBox(idHeight, "height", 128),
	button(idGenerateButton, "generate"),
	imageBox(idImage),
	textbox(idInfo, "info"),
	form(idGenerateForm),
	form(idInfoForm),
	tab(idTabPreview, "preview"),
	textbox(idPreviewPrompt, "prompt"),
	numberBox(idPreviewSteps, "steps", 4),
	button(idPreviewButton, "preview"),
	imageBox(idPreviewImage),
	form(idPreviewForm),
	tab(idTabCount, "count"),
	state(idState),
	numberBox(idCount, "count", nil),
	button(idCountButton, "count"),
	form(idCountForm),
	tab(idTabWhoami, "whoami"),
	textbox(idToken, "token"),
	button(idWhoamiButton, "whoami"),
	form(idTokenForm),
	{id: idTabs, typ: "tabs", props: object{{"overflow_behavior", "menu"}, {"visible", true},
		{"elem_classes", []any{}}, {"preserved_by_key", []any{}}, {"name", "tabs"}}},
}, moreComponents()...)

func textbox(id int, label string) component { return textboxInfo(id, label, "") }

// textboxInfo is a gr.Textbox with an info text ("" for none).
func textboxInfo(id int, label, info string) component {
	props := object{{"type", "text"}, {"lines", 1}, {"label", label}}
	if info != "" {
		props = append(props, member{"info", info})
	}
	props = append(props, object{{"show_label", true}, {"container", true},
		{"min_width", 160}, {"visible", true}, {"autofocus", false}, {"autoscroll", true},
		{"elem_classes", []any{}}, {"preserved_by_key", []any{"value"}}, {"rtl", false},
		{"buttons", []any{}}, {"submit_btn", false}, {"stop_btn", false},
		{"name", "textbox"}, {"_selectable", false},
	}...)
	return component{id: id, typ: "textbox", api: object{{"type", "string"}}, example: "Hello!!", props: props}
}

// numberBox is gr.Number(precision=0), with value nil for no initial value.
func numberBox(id int, label string, value any) component {
	props := object{}
	if value != nil {
		props = append(props, member{"value", value})
	}
	props = append(props, object{
		{"label", label}, {"show_label", true}, {"container", true}, {"min_width", 160},
		{"visible", true}, {"elem_classes", []any{}}, {"preserved_by_key", []any{"value"}},
		{"buttons", []any{}}, {"precision", 0}, {"step", 1}, {"name", "number"}, {"_selectable", false},
	}...)
	return component{id: id, typ: "number", props: props, api: object{{"type", "integer"}}, example: 3}
}

func imageBox(id int) component {
	const bus = "https://raw.githubusercontent.com/gradio-app/gradio/main/test/test_files/bus.png"
	return component{id: id, typ: "image", api: imageDataSchema(), props: object{
		{"streamable", false}, {"format", "png"}, {"image_mode", "RGB"},
		{"sources", []any{"upload", "webcam", "clipboard"}}, {"type", "pil"}, {"label", "image"},
		{"show_label", true}, {"buttons", []any{"download", "share", "fullscreen"}},
		{"container", true}, {"min_width", 160}, {"visible", true}, {"streaming", false},
		{"elem_classes", []any{}}, {"preserved_by_key", []any{"value"}},
		{"webcam_options", object{{"mirror", true}, {"constraints", nil}}},
		{"watermark", object{{"watermark", nil}, {"position", "bottom-right"}}},
		{"name", "image"}, {"_selectable", false},
	}, example: object{{"path", bus}, {"meta", object{{"_type", "gradio.FileData"}}},
		{"orig_name", "bus.png"}, {"url", bus}}}
}

// imageDataSchema is the JSON schema of gradio's ImageData.
func imageDataSchema() object {
	opt := func(typ, desc, title string) object {
		return object{{"anyOf", []any{object{{"type", typ}}, object{{"type", "null"}}}},
			{"default", nil}, {"description", desc}, {"title", title}}
	}
	return object{
		{"properties", object{
			{"path", opt("string", "Path to a local file", "Path")},
			{"url", opt("string", "Publicly available url or base64 encoded image", "Url")},
			{"size", opt("integer", "Size of image in bytes", "Size")},
			{"orig_name", opt("string", "Original filename", "Orig Name")},
			{"mime_type", opt("string", "mime type of image", "Mime Type")},
			{"is_stream", object{{"default", false}, {"description", "Can always be set to False"},
				{"title", "Is Stream"}, {"type", "boolean"}}},
			{"meta", object{{"additionalProperties", true}, {"default", object{{"_type", "gradio.FileData"}}},
				{"title", "Meta"}, {"type", "object"}}},
		}},
		{"title", "ImageData"}, {"type", "object"},
		{"additional_description", "A local filepath or publicly available URL."},
	}
}

func button(id int, value string) component { return buttonVisible(id, value, true) }

func buttonVisible(id int, value string, visible bool) component {
	return component{id: id, typ: "button", props: object{
		{"value", value}, {"variant", "secondary"}, {"size", "lg"}, {"link_target", "_self"},
		{"visible", visible}, {"interactive", true}, {"elem_classes", []any{}},
		{"preserved_by_key", []any{"value"}}, {"name", "button"}, {"_selectable", false},
	}}
}

func form(id int) component {
	return component{id: id, typ: "form", props: object{
		{"scale", 0}, {"min_width", 0}, {"preserved_by_key", []any{}}, {"name", "form"}}}
}

func tab(id int, label string) component {
	return component{id: id, typ: "tabitem", props: object{
		{"label", label}, {"visible", true}, {"interactive", true}, {"alignment", "left"},
		{"elem_classes", []any{}}, {"preserved_by_key", []any{}}, {"render_children", false}, {"name", "tab"}}}
}

func (c component) json() object {
	sum := sha256.Sum256([]byte("demospace." + c.typ))
	o := object{{"id", c.id}, {"type", c.typ}, {"props", c.props}, {"skip_api", c.api == nil},
		{"component_class_id", hex.EncodeToString(sum[:])}, {"key", nil}}
	if c.api != nil {
		o = append(o, member{"api_info", c.api}, member{"api_info_as_input", c.api},
			member{"api_info_as_output", c.api}, member{"example_inputs", c.example})
	}
	return o
}

func componentByID(id int) component {
	return components[id-1]
}

func (e *endpoint) json() object {
	var target, after any = e.trigger, nil
	event := e.event
	switch event {
	case "":
		event = "click"
	case "then":
		target, after = nil, e.after
	}
	return object{
		{"id", e.index}, {"targets", []any{[]any{target, event}}},
		{"inputs", ints(e.inputs)}, {"outputs", ints(e.outputs)},
		{"backend_fn", true}, {"js", nil}, {"queue", !e.direct}, {"api_name", e.name},
		{"api_description", nil}, {"scroll_to_output", false}, {"show_progress", "full"},
		{"show_progress_on", nil}, {"batch", false}, {"max_batch_size", 4}, {"cancels", []any{}},
		{"types", object{{"generator", e.generator}, {"cancel", false}}},
		{"collects_event_data", false}, {"trigger_after", after}, {"trigger_only_on_success", false},
		{"trigger_only_on_failure", false}, {"trigger_mode", "once"}, {"api_visibility", "public"},
		{"rendered_in", nil}, {"render_id", nil}, {"connection", "sse"}, {"time_limit", nil},
		{"stream_every", pyFloat(0.5)}, {"event_specific_args", nil}, {"component_prop_inputs", []any{}},
		{"js_implementation", nil},
	}
}

func ints(v []int) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

// appConfig is Blocks.get_config_file of app.py, with root set per request.
func (s *Space) appConfig(root string) object {
	comps := make([]any, len(components))
	ids := make([]any, len(components))
	for i, c := range components {
		comps[i] = c.json()
		ids[i] = c.id
	}
	deps := make([]any, len(s.endpoints))
	depIDs := make([]any, len(s.endpoints))
	for i, e := range s.endpoints {
		deps[i] = e.json()
		depIDs[i] = e.index
	}
	theme := sha256.Sum256([]byte("demospace default theme"))
	return object{
		{"version", version}, {"api_prefix", apiPrefix}, {"mode", "blocks"}, {"app_id", s.appID},
		{"dev_mode", false}, {"vibe_mode", false}, {"analytics_enabled", false},
		{"components", comps}, {"css", ""}, {"connect_heartbeat", true}, {"js", ""}, {"head", ""},
		{"title", "spacerelay test Space"}, {"space_id", nil}, {"enable_queue", true},
		{"show_error", false}, {"footer_links", []any{"api", "gradio", "settings", "runs"}},
		{"run_history", true}, {"is_colab", false}, {"max_file_size", s.cfg.MaxUploadBytes},
		{"stylesheets", []any{}}, {"theme", "default"}, {"protocol", "sse_v3"},
		{"body_css", object{{"body_background_fill", "white"}, {"body_text_color", "#27272a"},
			{"body_background_fill_dark", "#0f0f11"}, {"body_text_color_dark", "#f4f4f5"}}},
		{"fill_height", false}, {"fill_width", false}, {"theme_hash", hex.EncodeToString(theme[:])},
		{"pwa", false}, {"pages", []any{[]any{"", "Home", true}}},
		{"page", object{{"", object{{"layout", layout.json()}, {"components", ids}, {"dependencies", depIDs}}}}},
		{"mcp_server", false}, {"i18n_translations", nil}, {"dependencies", deps},
		{"layout", layout.json()}, {"username", nil}, {"root", root},
	}
}

// serveConfig answers GET /config.
func (s *Space) serveConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w)
		return
	}
	writeJSON(w, http.StatusOK, s.appConfig(rootURL(r, "/config")))
}
