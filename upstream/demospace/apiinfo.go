package demospace

import (
	"fmt"
	"net/http"
	"strings"
)

func capitalize(s string) string {
	return strings.ToUpper(s[:1]) + s[1:]
}

func label(c component) any {
	return c.props.get("label")
}

// parameters lists an endpoint's API inputs (skip_api ones left out).
func (e *endpoint) parameters() []any {
	params := []any{}
	for i, id := range e.inputs {
		c := componentByID(id)
		if c.api == nil {
			continue
		}
		def := c.props.get("value")
		params = append(params, object{
			{"label", label(c)}, {"parameter_name", e.params[i]},
			{"parameter_has_default", def != nil}, {"parameter_default", def},
			{"type", c.api}, {"python_type", pythonType(c, true)},
			{"component", capitalize(c.typ)}, {"example_input", c.example},
		})
	}
	return params
}

func (e *endpoint) returns() []any {
	out := []any{}
	for _, id := range e.outputs {
		c := componentByID(id)
		if c.api == nil {
			continue
		}
		out = append(out, object{
			{"label", label(c)}, {"type", c.api},
			{"python_type", pythonType(c, false)},
			{"component", capitalize(c.typ)},
		})
	}
	return out
}

// apiInfo is what GET {P}/info returns: Blocks.get_api_info plus code
// snippets for root.
func (s *Space) apiInfo(root string) object {
	named := object{}
	for _, e := range s.endpoints {
		named = append(named, member{"/" + e.name, object{
			{"parameters", e.parameters()}, {"returns", e.returns()},
			{"api_visibility", "public"}, {"description", e.description},
			{"code_snippets", e.snippets(root)},
		}})
	}
	return object{{"named_endpoints", named}, {"unnamed_endpoints", object{}}}
}

// snippets are short usage examples in the spirit of Gradio's.
func (e *endpoint) snippets(root string) object {
	var py, js, kv, lines []string
	for _, p := range e.parameters() {
		p := p.(object)
		name := p.get("parameter_name").(string)
		val := string(encodeJSON(p.get("example_input")))
		if def := p.get("parameter_default"); def != nil {
			val = string(encodeJSON(def))
		}
		py = append(py, fmt.Sprintf("\t%s=%s,\n", name, val))
		js = append(js, fmt.Sprintf("\t\t%s: %s,\n", name, val))
		kv = append(kv, fmt.Sprintf("%q: %s", name, val))
		lines = append(lines, fmt.Sprintf("  %q: %s", name, val))
	}
	body := "{" + strings.Join(kv, ", ") + "}"
	pretty := "{}"
	if len(lines) > 0 {
		pretty = "{\n" + strings.Join(lines, ",\n") + "\n}"
	}
	return object{
		{"python", fmt.Sprintf("from gradio_client import Client\n\nclient = Client(%q)\nresult = client.predict(\n%s\tapi_name=\"/%s\",\n)\nprint(result)",
			root, strings.Join(py, ""), e.name)},
		{"javascript", fmt.Sprintf("import { Client } from \"@gradio/client\";\n\nconst client = await Client.connect(%q);\nconst result = await client.predict(\"/%s\", {\n%s});\n\nconsole.log(result.data);",
			root, e.name, strings.Join(js, ""))},
		{"bash", fmt.Sprintf("curl -X POST %s%s/call/v2/%s -s -H \"Content-Type: application/json\" \\\n  -d '%s' \\\n  | awk -F'\"' '{ print $4}' \\\n  | read EVENT_ID; curl -N %s%s/call/%s/$EVENT_ID",
			root, apiPrefix, e.name, body, root, apiPrefix, e.name)},
		{"cli", fmt.Sprintf("{command} predict %s /%s '%s'\n", root, e.name, pretty)},
	}
}

// serveInfo answers GET {P}/info.
func (s *Space) serveInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w)
		return
	}
	writeJSON(w, http.StatusOK, s.apiInfo(rootURL(r, apiPrefix+"/info")))
}
