package demospace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// endpoint is one event listener of the app (a config dependency).
type endpoint struct {
	index       int      // fn_index
	name        string   // api_name, without the slash
	params      []string // Python parameter names of the inputs
	description string   // the function's docstring, as /info shows it
	inputs      []int    // component ids
	outputs     []int
	generator   bool
	direct      bool   // queue=False: called with POST {P}/run/<name>, never queued
	trigger     int    // the component whose event fires it (0: none, a .then)
	event       string // "click", "submit" or "then"
	after       int    // for a .then: the fn_index it follows
	run         func(c *call) ([]any, error)
}

func (s *Space) newEndpoints() []*endpoint {
	return append([]*endpoint{
		{index: 0, name: "generate", params: []string{"prompt", "steps", "width", "height"},
			inputs: []int{idPrompt, idSteps, idWidth, idHeight}, outputs: []int{idImage, idInfo},
			trigger: idGenerateButton, run: s.generate},
		{index: 1, name: "preview", params: []string{"prompt", "steps"},
			inputs: []int{idPreviewPrompt, idPreviewSteps}, outputs: []int{idPreviewImage},
			generator: true, trigger: idPreviewButton, run: s.preview},
		{index: 2, name: "count", params: []string{"state"}, inputs: []int{idState},
			outputs: []int{idCount, idState}, trigger: idCountButton, run: s.count},
		{index: 3, name: "whoami", outputs: []int{idToken}, trigger: idWhoamiButton, run: s.whoami},
		{index: 4, name: "reset_count", description: "Sets the count back to zero.",
			outputs: []int{idState}, trigger: idResetButton, run: s.resetCount},
		{index: 5, name: "restyle", params: []string{"image", "prompt", "strength", "style"},
			description: "Restyles an image: inverts it, makes it grayscale or tints it with the prompt's colour.",
			inputs:      []int{idRestyleImage, idRestylePrompt, idStrength, idStyle},
			outputs:     []int{idRestyled, idRestyleInfo}, trigger: idRestyleButton, run: s.restyle},
		{index: 6, name: "add_message", params: []string{"message", "history"},
			description: "Adds the user's message to the chat history, without queueing.",
			inputs:      []int{idMessage, idHistory}, outputs: []int{idMessage, idHistory},
			direct: true, trigger: idMessage, event: "submit", run: s.addMessage},
		{index: 7, name: "bot_reply", params: []string{"history", "words"},
			description: "Streams the echo of the last user message, one word at a time.",
			inputs:      []int{idHistory, idWords}, outputs: []int{idHistory}, generator: true,
			event: "then", after: 6, run: s.botReply},
		{index: 8, name: "chat", params: []string{"message", "history"},
			description: "Echoes the message back, one word at a time.",
			inputs:      []int{idChatText, idChatState}, outputs: []int{idChatResponse, idChatState},
			generator: true, trigger: idChatButton, run: s.chat},
		{index: 9, name: "ticks", params: []string{"n"}, description: "Counts n ticks, one per step.",
			inputs: []int{idTicksN}, outputs: []int{idTick}, generator: true,
			trigger: idTicksButton, run: s.ticks},
	}, s.mediaEndpoints()...)
}

// A preprocessor turns one element of the join's data into the value the
// function gets, as a Gradio component's preprocess does.
type preprocessor func(json.RawMessage) (any, error)

// args preprocesses the job's data; too few values is an error, extra ones
// are ignored (Blocks.validate_inputs).
func (c *call) args(pre ...preprocessor) ([]any, error) {
	if len(c.ev.data) < len(c.ev.fn.inputs) {
		return nil, fmt.Errorf("%w: needed %d input values, got %d", errHidden, len(c.ev.fn.inputs), len(c.ev.data))
	}
	out := make([]any, len(pre))
	for i, p := range pre {
		v, err := p(c.ev.data[i])
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// textIn is gr.Textbox's preprocess: None stays None, anything else becomes str().
func textIn(raw json.RawMessage) (any, error) {
	var v any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", errHidden, err)
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return v, nil
	case bool:
		return map[bool]string{true: "True", false: "False"}[v], nil
	case json.Number:
		if isFloat(v.String()) {
			f, _ := v.Float64()
			return string(appendPyFloat(nil, f)), nil
		}
		return v.String(), nil
	}
	return nil, fmt.Errorf("%w: a textbox got %s", errHidden, raw)
}

// numberIn is the preprocess of gr.Number(precision=0): None stays None, numbers are rounded
// half to even to an int, anything else fails.
func numberIn(raw json.RawMessage) (any, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", errHidden, err)
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case bool:
		if v {
			return int64(1), nil
		}
		return int64(0), nil
	case float64:
		r := math.RoundToEven(v)
		if math.Abs(r) > 1<<62 {
			r = math.Copysign(1<<62, r) // out of every range we check
		}
		return int64(r), nil
	}
	return nil, fmt.Errorf("%w: a number got %s", errHidden, raw)
}

func isFloat(num string) bool { return strings.ContainsAny(num, ".eE") }

// stateIn is gr.State's preprocess: the value sent is ignored.
func stateIn(json.RawMessage) (any, error) { return nil, nil }

// wholeNumber is app.py's whole_number: an int in [low, high].
func wholeNumber(v any, low, high int64, name string) (int, error) {
	n, ok := v.(int64)
	if !ok || n < low || n > high {
		return 0, fmt.Errorf("%w: %s must be a whole number in %d..%d", errHidden, name, low, high)
	}
	return int(n), nil
}

// checkText is app.py's check_text: the prompt must be a string.
func checkText(v any) (string, error) {
	p, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: prompt must be a string", errHidden)
	}
	return p, nil
}

// checkPrompt applies the raise: and crash: prompts of SPEC.md.
func checkPrompt(p string) error {
	switch {
	case strings.HasPrefix(p, "raise:"):
		return &appError{message: "Cannot draw <b>" + p[len("raise:"):] + "</b>", title: "Bad prompt"}
	case strings.HasPrefix(p, "crash:"):
		return fmt.Errorf("%w: ValueError(%s)", errHidden, strconv.Quote(p[len("crash:"):]))
	}
	return nil
}

const (
	maxSteps    = 3600
	maxSide     = 1024
	previewSide = 128
)

// generateArgs are the checked inputs of /generate.
type generateArgs struct {
	prompt               string
	steps, width, height int
}

// generate is /generate of SPEC.md. Its inputs are checked before anything
// is journaled or any quota used.
func (s *Space) generate(c *call) ([]any, error) {
	in, err := c.args(textIn, numberIn, numberIn, numberIn)
	if err != nil {
		return nil, err
	}
	var a generateArgs
	var errs [4]error
	a.prompt, errs[0] = checkText(in[0])
	a.steps, errs[1] = wholeNumber(in[1], 1, maxSteps, "steps")
	a.width, errs[2] = wholeNumber(in[2], 1, maxSide, "width")
	a.height, errs[3] = wholeNumber(in[3], 1, maxSide, "height")
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	c.journal("started", a.prompt)
	out, err := s.generateImage(c, a)
	if errors.Is(err, context.Canceled) {
		c.journal("cancelled", a.prompt)
	}
	return out, err
}

func (s *Space) generateImage(c *call, a generateArgs) ([]any, error) {
	if err := s.takeGPU(c, a.steps, a.prompt); err != nil {
		return nil, err
	}
	if err := checkPrompt(a.prompt); err != nil {
		return nil, err
	}
	c.log("info", "Waiting for a GPU to become available", "ZeroGPU queue")
	c.log("success", "Successfully acquired a GPU", "ZeroGPU queue")
	for i := range a.steps {
		c.progress(i, a.steps)
		if err := c.sleep(); err != nil {
			return nil, err
		}
	}
	img := c.image(a.prompt, a.width, a.height, a.height)
	info := encodeJSON(object{{"token", c.ev.caller.digest}, {"prompt", a.prompt}, {"steps", a.steps}})
	c.journal("completed", a.prompt)
	return []any{img, string(info)}, nil
}

// preview is /preview of SPEC.md, a generator.
func (s *Space) preview(c *call) ([]any, error) {
	in, err := c.args(textIn, numberIn)
	if err != nil {
		return nil, err
	}
	prompt, err := checkText(in[0])
	if err != nil {
		return nil, err
	}
	steps, err := wholeNumber(in[1], 1, maxSteps, "steps")
	if err != nil {
		return nil, err
	}
	c.journal("started", prompt)
	out, err := s.previewImages(c, prompt, steps)
	if errors.Is(err, context.Canceled) || errors.Is(err, errDead) {
		c.journal("cancelled", prompt)
	}
	return out, err
}

func (s *Space) previewImages(c *call, prompt string, steps int) ([]any, error) {
	for i := 1; i <= steps; i++ {
		c.progress(i-1, steps)
		if err := c.sleep(); err != nil {
			return nil, err
		}
		frame := c.image(prompt, previewSide, previewSide, previewSide*i/steps)
		if err := c.yield([]any{frame}); err != nil {
			return nil, err
		}
	}
	c.journal("completed", prompt)
	return c.last, nil
}

// count is /count: a counter in the session's gr.State.
func (s *Space) count(c *call) ([]any, error) {
	if _, err := c.args(stateIn); err != nil {
		return nil, err
	}
	return []any{s.counts.incr(c.ev.session), nil}, nil
}

// whoami is /whoami: the token digest the job saw.
func (s *Space) whoami(c *call) ([]any, error) {
	return []any{c.ev.caller.digest}, nil
}
