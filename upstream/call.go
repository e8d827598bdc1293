package upstream

import (
	"fmt"
	"sort"
	"strings"
)

// Call is one call of an endpoint: give Data or Inputs, not both.
type Call struct {
	// Endpoint is the api_name with its leading slash. Empty means the
	// app's only endpoint.
	Endpoint string
	// Data is positional: one value per parameter of the endpoint, in
	// order. Trailing parameters that have defaults may be left out.
	Data []any
	// Inputs is keyed by parameter name; missing parameters take their
	// defaults.
	Inputs map[string]any
}

// payload returns the data array of a queue join: one value per input of
// the function, with nulls in the State slots. The values given are
// checked against their parameters' schemas first.
func (ep *Endpoint) payload(call Call) ([]any, error) {
	if call.Data != nil && call.Inputs != nil {
		return nil, invalidInput("give positional data or named inputs, not both")
	}
	args := make([]any, len(ep.Inputs))
	given := make([]bool, len(ep.Inputs))
	switch {
	case len(call.Data) == len(ep.slots) && len(ep.slots) != len(ep.Inputs):
		if err := ep.checkSlots(call.Data); err != nil {
			return nil, err
		}
		return call.Data, nil // the caller filled the State slots itself
	case len(call.Data) > len(ep.Inputs):
		return nil, invalidInput(fmt.Sprintf("%s takes %d inputs, got %d", ep.Name, len(ep.Inputs), len(call.Data)))
	case call.Data != nil:
		for i, v := range call.Data {
			args[i], given[i] = v, true
		}
	default:
		if err := ep.byName(call.Inputs, args, given); err != nil {
			return nil, err
		}
	}
	var missing []string
	for i, p := range ep.Inputs {
		if given[i] {
			continue
		}
		if p.Required {
			missing = append(missing, p.Name)
		}
		args[i] = p.Default
	}
	if len(missing) > 0 {
		return nil, invalidInput(fmt.Sprintf("%s needs %s", ep.Name, quoteList(missing)))
	}
	if err := ep.checkArgs(args, given); err != nil {
		return nil, err
	}
	data := make([]any, len(ep.slots))
	for i, slot := range ep.slots {
		if slot >= 0 {
			data[i] = args[slot]
		}
	}
	return data, nil
}

func (ep *Endpoint) byName(inputs map[string]any, args []any, given []bool) error {
	var unknown []string
	for name, v := range inputs {
		i := ep.param(name)
		if i < 0 {
			unknown = append(unknown, name)
			continue
		}
		args[i], given[i] = v, true
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		names := make([]string, len(ep.Inputs))
		for i, p := range ep.Inputs {
			names[i] = p.Name
		}
		return invalidInput(fmt.Sprintf("%s has no parameter %s (it takes %s)", ep.Name, quoteList(unknown), quoteList(names)))
	}
	return nil
}

func (ep *Endpoint) param(name string) int {
	for i, p := range ep.Inputs {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// outputs keeps the values of the endpoint's visible outputs.
func (ep *Endpoint) outputs(data []any) []any {
	if len(ep.keep) == len(data) {
		return data
	}
	out := make([]any, 0, len(ep.keep))
	for _, i := range ep.keep {
		if i < len(data) {
			out = append(out, data[i])
		}
	}
	return out
}

func invalidInput(msg string) *Error { return &Error{Code: CodeInvalidInput, Message: msg} }

func quoteList(names []string) string {
	if len(names) == 0 {
		return "nothing"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
