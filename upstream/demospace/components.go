package demospace

import (
	_ "embed"
	"encoding/json"
)

// The components app.py added after its first four endpoints: /restyle's
// image, slider and dropdown, the chat's Chatbot, the ChatInterface's
// public /chat endpoint (its UI-only events are left out), /ticks and the
// file endpoints.
func moreComponents() []component {
	return append([]component{
		tab(idTabReset, "reset count"),
		button(idResetButton, "reset count"),
		tab(idTabRestyle, "restyle"),
		imageInput(idRestyleImage, "image"),
		textboxInfo(idRestylePrompt, "prompt", "raise:<text> and crash:<text> fail"),
		slider(idStrength, "strength", "how far to go, in percent", 0, 100, 50, 1),
		dropdown(idStyle, "style", "what to do to the image", styles, "tint"),
		button(idRestyleButton, "restyle"),
		imageOutput(idRestyled, "restyled"),
		textbox(idRestyleInfo, "info"),
		form(idRestyleForm),
		form(idRestyleInfoForm),
		tab(idTabChat, "chat"),
		chatbot(idHistory, "history"),
		textbox(idMessage, "message"),
		numberRange(idWords, "words", 8, 1, maxChatWords),
		form(idChatForm),
		tab(idTabChatInterface, "chat interface"),
		chatTextbox(idChatText),
		state(idChatState),
		jsonBox(idChatResponse, "Response"),
		buttonVisible(idChatButton, "Fake API", false),
		form(idChatForm2),
		tab(idTabTicks, "ticks"),
		numberBox(idTicksN, "n", 3),
		textbox(idTick, "tick"),
		button(idTicksButton, "ticks"),
		form(idTicksForm),
	}, mediaComponents()...)
}

func state(id int) component {
	return component{id: id, typ: "state", props: object{{"time_to_live", nil},
		{"delete_callback", "<function default_delete_callback at 0x7f0000000000>"},
		{"name", "state"}, {"_selectable", false}}}
}

// imageInput is gr.Image(type="filepath", image_mode=None, sources=["upload"]).
func imageInput(id int, label string) component {
	c := imageBox(id)
	c.props = object{
		{"streamable", false}, {"format", "webp"}, {"sources", []any{"upload"}}, {"type", "filepath"},
		{"label", label}, {"show_label", true}, {"buttons", []any{"download", "share", "fullscreen"}},
		{"container", true}, {"min_width", 160}, {"visible", true}, {"streaming", false},
		{"elem_classes", []any{}}, {"preserved_by_key", []any{"value"}},
		{"webcam_options", object{{"mirror", true}, {"constraints", nil}}},
		{"watermark", object{{"watermark", nil}, {"position", "bottom-right"}}},
		{"name", "image"}, {"_selectable", false},
	}
	return c
}

// imageOutput is gr.Image(format="png", type="pil") with a label.
func imageOutput(id int, label string) component {
	c := imageBox(id)
	props := make(object, len(c.props))
	copy(props, c.props)
	for i := range props {
		if props[i].key == "label" {
			props[i].val = label
		}
	}
	c.props = props
	return c
}

func slider(id int, label, info string, minimum, maximum, value, step int) component {
	return component{id: id, typ: "slider", example: minimum, props: object{
		{"minimum", minimum}, {"maximum", maximum}, {"value", value}, {"step", step},
		{"label", label}, {"info", info}, {"show_label", true}, {"container", true},
		{"min_width", 160}, {"visible", true}, {"elem_classes", []any{}},
		{"preserved_by_key", []any{"value"}}, {"name", "slider"}, {"_selectable", false},
	}, api: object{{"type", "number"}, {"description", "numeric value between " +
		string(encodeJSON(minimum)) + " and " + string(encodeJSON(maximum))}}}
}

func dropdown(id int, label, info string, choices []string, value string) component {
	pairs := make([]any, len(choices))
	enum := make([]any, len(choices))
	for i, c := range choices {
		pairs[i], enum[i] = []any{c, c}, c
	}
	return component{id: id, typ: "dropdown", example: choices[0], props: object{
		{"choices", pairs}, {"value", value}, {"type", "value"}, {"allow_custom_value", false},
		{"num_choices_shown", 100}, {"filterable", true}, {"label", label}, {"info", info},
		{"show_label", true}, {"container", true}, {"min_width", 160}, {"visible", true},
		{"elem_classes", []any{}}, {"preserved_by_key", []any{"value"}}, {"buttons", []any{}},
		{"name", "dropdown"}, {"_selectable", false},
	}, api: object{{"type", "string"}, {"enum", enum}}}
}

// numberRange is gr.Number(precision=0, minimum=..., maximum=...).
func numberRange(id int, label string, value, minimum, maximum int) component {
	c := numberBox(id, label, value)
	props := object{}
	for _, m := range c.props {
		if m.key == "step" {
			props = append(props, member{"minimum", minimum}, member{"maximum", maximum})
		}
		props = append(props, m)
	}
	c.props, c.example = props, minimum
	return c
}

//go:embed chatbot_schema.json
var chatbotSchema []byte

// chatbot is gr.Chatbot in Gradio 6 (messages whose content is a list of
// parts). Its schema is Gradio's own, as /config reports it.
func chatbot(id int, label string) component {
	part := func(role, text string) object {
		return object{{"role", role}, {"metadata", nil},
			{"content", []any{object{{"text", text}, {"type", "text"}}}}, {"options", nil}}
	}
	return component{id: id, typ: "chatbot", api: json.RawMessage(chatbotSchema),
		example: []any{part("user", "Hello!"), part("assistant", "How can I help you?")},
		props: object{
			{"_undoable", false}, {"_retryable", false}, {"likeable", false}, {"value", []any{}},
			{"label", label}, {"show_label", true}, {"container", true}, {"min_width", 160},
			{"visible", true}, {"elem_classes", []any{}}, {"autoscroll", true},
			{"preserved_by_key", []any{"value"}}, {"height", 400}, {"resizable", false},
			{"latex_delimiters", []any{object{{"left", "$$"}, {"right", "$$"}, {"display", true}}}},
			{"rtl", false}, {"buttons", []any{"share", "copy", "copy_all"}},
			{"avatar_images", []any{nil, nil}}, {"sanitize_html", true}, {"render_markdown", true},
			{"feedback_options", []any{"Like", "Dislike"}}, {"line_breaks", true},
			{"allow_file_downloads", true}, {"group_consecutive_messages", true},
			{"allow_tags", true}, {"like_user_message", false}, {"name", "chatbot"}, {"_selectable", false},
		}}
}

// chatTextbox is the message box of a gr.ChatInterface: no label, and a
// placeholder that is a translation key, as Gradio 6 writes it in /config.
func chatTextbox(id int) component {
	c := textbox(id, "")
	c.props = object{
		{"type", "text"}, {"lines", 1},
		{"placeholder", `__i18n__{"__type__": "translation_metadata", "key": "chat_interface.message_placeholder"}`},
		{"label", ""}, {"show_label", false}, {"container", true}, {"scale", 7}, {"min_width", 160},
		{"visible", true}, {"autofocus", true}, {"autoscroll", true}, {"elem_classes", []any{}},
		{"preserved_by_key", []any{"value"}}, {"rtl", false}, {"buttons", []any{}},
		{"submit_btn", true}, {"stop_btn", false}, {"name", "textbox"}, {"_selectable", false},
	}
	return c
}

func jsonBox(id int, label string) component {
	return component{id: id, typ: "json", example: object{{"foo", "bar"}},
		api: object{{"type", object{}}, {"description", "any valid json"}}, props: object{
			{"label", label}, {"show_label", true}, {"container", true}, {"min_width", 160},
			{"visible", false}, {"elem_classes", []any{}}, {"preserved_by_key", []any{"value"}},
			{"open", false}, {"show_indices", false}, {"max_height", 500}, {"buttons", []any{"copy"}},
			{"name", "json"}, {"_selectable", false},
		}}
}

// chatbotPythonType is what Gradio 6.31 writes as a Chatbot's python_type.
const chatbotPythonType = "list[dict(role: str, metadata: dict(title: str, id: int | str, parent_id: int | str, log: str, duration: float, status: Literal['pending', 'done']) | None, content: list[dict(text: str, type: Literal[text]) | dict(file: filepath, alt_text: str | None, type: Literal[file]) | dict(component: str, value: Any, constructor_args: dict(str, Any), props: dict(str, Any), type: Literal[component])], options: list[dict(value: str, label: str)] | None)]"

// pythonType is the python_type of a component in /info, as an input
// (a parameter) or an output (a return).
func pythonType(c component, input bool) object {
	desc := any("")
	var typ string
	switch c.typ {
	case "textbox":
		typ = "str"
	case "number":
		typ = "int"
	case "slider":
		typ = "float"
	case "image":
		typ = "filepath"
		if input && c.props.get("type") == "filepath" {
			desc = "A local filepath or publicly available URL."
		}
	case "dropdown":
		typ = "Literal["
		for i, ch := range c.props.get("choices").([]any) {
			if i > 0 {
				typ += ", "
			}
			typ += "'" + ch.([]any)[1].(string) + "'"
		}
		typ += "]"
	case "chatbot":
		typ = chatbotPythonType
		if input {
			desc = nil
		}
	case "json":
		typ, desc = "str | float | bool | list | dict", "any valid json"
	case "gallery":
		typ, desc = galleryPythonType, nil
	case "file":
		typ, desc = filesPythonType, nil
	case "audio", "video":
		typ, desc = "filepath", fileDataDescription
	default:
		typ = "Any"
	}
	return object{{"type", typ}, {"description", desc}}
}
