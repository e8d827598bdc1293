package demospace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // gr.Image takes what PIL opens; these are the formats Go has
	_ "image/jpeg"
	"path"
	"strconv"
	"strings"
)

const (
	restyleSteps   = 4 // progress steps of /restyle
	restyleSeconds = 4 // GPU seconds a /restyle asks of the quota
)

// styles are the choices of /restyle's dropdown.
var styles = []string{"invert", "grayscale", "tint"}

// restyleArgs are the checked inputs of /restyle.
type restyleArgs struct {
	image    *storedFile
	prompt   string
	strength int
	style    string
}

// imageIn is gr.Image(type="filepath", image_mode=None)'s preprocess:
// None stays None; a FileData must name a file uploaded to this Space
// (Gradio refuses other paths) that opens as an image. The file is not
// re-encoded.
func (s *Space) imageIn(raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var fd struct {
		Path *string `json:"path"`
	}
	if err := json.Unmarshal(raw, &fd); err != nil || fd.Path == nil {
		return nil, fmt.Errorf("%w: an image input got %.40s", errHidden, raw)
	}
	f, ok := s.files.get(path.Clean(*fd.Path))
	if !ok {
		return nil, fmt.Errorf("%w: the image was not uploaded to this Space", errHidden)
	}
	if _, _, err := image.DecodeConfig(bytes.NewReader(f.data)); err != nil {
		return nil, fmt.Errorf("%w: cannot identify image file", errHidden)
	}
	return f, nil
}

// sliderIn is gr.Slider(minimum, maximum)'s preprocess: a number in range,
// else a gr.Error with Gradio's text.
func sliderIn(minimum, maximum int) preprocessor {
	return func(raw json.RawMessage) (any, error) {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%w: %v", errHidden, err)
		}
		f, ok := v.(float64)
		if v == nil {
			return nil, nil
		}
		if !ok {
			return nil, fmt.Errorf("%w: a slider got %s", errHidden, raw)
		}
		num := strings.TrimSpace(string(raw))
		if isFloat(num) {
			num = string(appendPyFloat(nil, f))
		}
		if f < float64(minimum) {
			return nil, &appError{message: fmt.Sprintf("Value %s is less than minimum value %d.", num, minimum), title: "Error"}
		}
		if f > float64(maximum) {
			return nil, &appError{message: fmt.Sprintf("Value %s is greater than maximum value %d.", num, maximum), title: "Error"}
		}
		return f, nil
	}
}

// dropdownIn is gr.Dropdown(choices)'s preprocess: one of the choices,
// else a gr.Error with Gradio's text.
func dropdownIn(choices []string) preprocessor {
	return func(raw json.RawMessage) (any, error) {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%w: %v", errHidden, err)
		}
		if v == nil {
			return nil, nil
		}
		for _, c := range choices {
			if v == c {
				return c, nil
			}
		}
		quoted := make([]string, len(choices))
		for i, c := range choices {
			quoted[i] = "'" + c + "'"
		}
		shown := fmt.Sprint(v)
		if f, ok := v.(float64); ok {
			shown = string(appendPyFloat(nil, f))
			if !isFloat(strings.TrimSpace(string(raw))) {
				shown = strconv.FormatFloat(f, 'f', -1, 64)
			}
		}
		return nil, &appError{title: "Error",
			message: fmt.Sprintf("Value: %s is not in the list of choices: [%s]", shown, strings.Join(quoted, ", "))}
	}
}

// wholeFloat is app.py's whole_number for a float input.
func wholeFloat(v any, low, high int, name string) (int, error) {
	f, ok := v.(float64)
	if !ok || f != float64(int(f)) || f < float64(low) || f > float64(high) {
		return 0, fmt.Errorf("%w: %s must be a whole number in %d..%d", errHidden, name, low, high)
	}
	return int(f), nil
}

func (s *Space) restyleArgs(c *call) (restyleArgs, error) {
	in, err := c.args(s.imageIn, textIn, sliderIn(0, 100), dropdownIn(styles))
	if err != nil {
		return restyleArgs{}, err
	}
	var a restyleArgs
	if in[0] == nil {
		return a, &appError{message: "Give an image to restyle.", title: "No image"}
	}
	a.image = in[0].(*storedFile)
	if a.prompt, err = checkText(in[1]); err != nil {
		return a, err
	}
	if a.strength, err = wholeFloat(in[2], 0, 100, "strength"); err != nil {
		return a, err
	}
	a.style, _ = in[3].(string)
	if a.style == "" {
		return a, fmt.Errorf("%w: style must be one of %s", errHidden, strings.Join(styles, ", "))
	}
	return a, nil
}

// restyle is /restyle of SPEC.md.
func (s *Space) restyle(c *call) ([]any, error) {
	a, err := s.restyleArgs(c)
	if err != nil {
		return nil, err
	}
	c.journal("started", a.prompt)
	out, err := s.restyleImage(c, a)
	if errors.Is(err, context.Canceled) {
		c.journal("cancelled", a.prompt)
	}
	return out, err
}

func (s *Space) restyleImage(c *call, a restyleArgs) ([]any, error) {
	if err := s.takeGPU(c, restyleSeconds, a.prompt); err != nil {
		return nil, err
	}
	if err := checkPrompt(a.prompt); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(a.image.data)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(a.image.data))
	if err != nil || cfg.Width > maxSide || cfg.Height > maxSide {
		return nil, fmt.Errorf("%w: the image must be at most %d x %d", errHidden, maxSide, maxSide)
	}
	src, _, err := image.Decode(bytes.NewReader(a.image.data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errHidden, err)
	}
	for i := range restyleSteps {
		c.progress(i, restyleSteps)
		if err := c.sleep(); err != nil {
			return nil, err
		}
	}
	img := restyled(src, a.style, a.strength, a.prompt)
	p := s.files.put("image.png", encodePNG(img), s.now())
	info := encodeJSON(object{{"sha256", hex.EncodeToString(sum[:])}, {"width", cfg.Width},
		{"height", cfg.Height}, {"style", a.style}, {"strength", a.strength}, {"prompt", a.prompt}})
	c.journal("completed", a.prompt)
	return []any{c.fileData(p, "image.png"), string(info)}, nil
}

// restyled moves each pixel of src (as RGB, alpha dropped, as PIL's
// convert("RGB") does) strength percent of the way towards the style's
// target, in integer arithmetic so that Go and numpy agree exactly.
func restyled(src image.Image, style string, strength int, prompt string) *image.NRGBA {
	b := src.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	tint := sha256.Sum256([]byte(prompt))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			p := color.NRGBAModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			rgb := [3]int{int(p.R), int(p.G), int(p.B)}
			var t [3]int
			switch style {
			case "invert":
				t = [3]int{255 - rgb[0], 255 - rgb[1], 255 - rgb[2]}
			case "grayscale":
				l := (299*rgb[0] + 587*rgb[1] + 114*rgb[2] + 500) / 1000
				t = [3]int{l, l, l}
			default:
				t = [3]int{int(tint[0]), int(tint[1]), int(tint[2])}
			}
			i := out.PixOffset(x, y)
			for k := range 3 {
				out.Pix[i+k] = uint8((rgb[k]*(100-strength) + t[k]*strength + 50) / 100)
			}
			out.Pix[i+3] = 0xff
		}
	}
	return out
}
