package demospace

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxChatWords bounds the words of a reply (app.py's CHAT_WORDS_MAX).
const maxChatWords = 50

// chatbotIn is gr.Chatbot's preprocess in Gradio 6: None is an empty
// history; otherwise a list of messages, each with a string role and a
// list of content parts, or the app fails with a hidden error (Gradio's
// validation error). Text parts come out as {"text", "type"}; other parts
// pass as they are.
func chatbotIn(raw json.RawMessage) (any, error) {
	var msgs []map[string]json.RawMessage
	if string(raw) == "null" {
		return []any{}, nil
	}
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return nil, fmt.Errorf("%w: a chatbot got %.40s", errHidden, raw)
	}
	out := make([]any, 0, len(msgs))
	for _, m := range msgs {
		var role string
		var parts []map[string]json.RawMessage
		if json.Unmarshal(m["role"], &role) != nil || json.Unmarshal(m["content"], &parts) != nil || parts == nil {
			return nil, fmt.Errorf("%w: a chat message needs a role and a list of content parts", errHidden)
		}
		content := make([]any, 0, len(parts))
		for _, p := range parts {
			var text string
			if err := json.Unmarshal(p["text"], &text); err == nil {
				content = append(content, textPart(text))
				continue
			}
			raw, _ := json.Marshal(p)
			content = append(content, json.RawMessage(raw))
		}
		out = append(out, chatMessage(role, content))
	}
	return out, nil
}

func textPart(text string) object { return object{{"text", text}, {"type", "text"}} }

// chatMessage is a message as Gradio 6's Chatbot postprocess writes it.
func chatMessage(role string, content []any) object {
	return object{{"role", role}, {"metadata", nil}, {"content", content}, {"options", nil}}
}

// textOf is the text of a message's content parts.
func textOf(content any) string {
	var b strings.Builder
	parts, _ := content.([]any)
	for _, p := range parts {
		if o, ok := p.(object); ok {
			if s, ok := o.get("text").(string); ok {
				b.WriteString(s)
			}
		}
	}
	return b.String()
}

// replyWords are the words of the echo reply to text, at most limit.
func replyWords(text string, limit int) []string {
	words := append([]string{"You", "said:"}, strings.Fields(text)...)
	return words[:min(limit, len(words))]
}

// addMessage is /add_message (queue=False): the user's message joins the
// history and the textbox empties.
func (s *Space) addMessage(c *call) ([]any, error) {
	in, err := c.args(textIn, chatbotIn)
	if err != nil {
		return nil, err
	}
	msg, err := checkText(in[0])
	if err != nil {
		return nil, err
	}
	history := append(in[1].([]any), chatMessage("user", []any{textPart(msg)}))
	return []any{"", history}, nil
}

// botReply is /bot_reply: the echo of the last user message, one word per
// step, as a growing assistant message.
func (s *Space) botReply(c *call) ([]any, error) {
	in, err := c.args(chatbotIn, numberIn)
	if err != nil {
		return nil, err
	}
	words, err := wholeNumber(in[1], 1, maxChatWords, "words")
	if err != nil {
		return nil, err
	}
	history := in[0].([]any)
	last := ""
	for i := len(history) - 1; i >= 0; i-- {
		if m := history[i].(object); m.get("role") == "user" {
			last = textOf(m.get("content"))
			break
		}
	}
	reply := ""
	for _, w := range replyWords(last, words) {
		if err := c.sleep(); err != nil {
			return nil, err
		}
		reply = strings.TrimPrefix(reply+" "+w, " ")
		out := append(append([]any{}, history...), chatMessage("assistant", []any{textPart(reply)}))
		if err := c.yield([]any{out}); err != nil {
			return nil, err
		}
	}
	return c.last, nil
}

// chat is the public /chat endpoint of the gr.ChatInterface: it streams
// the echo of the message; its State output stays null.
func (s *Space) chat(c *call) ([]any, error) {
	in, err := c.args(textIn, stateIn)
	if err != nil {
		return nil, err
	}
	text, _ := in[0].(string)
	reply := ""
	for _, w := range replyWords(text, maxChatWords) {
		if err := c.sleep(); err != nil {
			return nil, err
		}
		reply = strings.TrimPrefix(reply+" "+w, " ")
		if err := c.yield([]any{reply, nil}); err != nil {
			return nil, err
		}
	}
	return c.last, nil
}

// ticks is /ticks: n steps of StepDelay, yielding "tick i of n" after each.
func (s *Space) ticks(c *call) ([]any, error) {
	in, err := c.args(numberIn)
	if err != nil {
		return nil, err
	}
	n, err := wholeNumber(in[0], 1, maxSteps, "n")
	if err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		if err := c.sleep(); err != nil {
			return nil, err
		}
		if err := c.yield([]any{fmt.Sprintf("tick %d of %d", i, n)}); err != nil {
			return nil, err
		}
	}
	return c.last, nil
}

// resetCount is /reset_count: /count's State goes back to zero. Its only
// output is that State, so the client sees [null].
func (s *Space) resetCount(c *call) ([]any, error) {
	s.counts.reset(c.ev.session)
	return []any{nil}, nil
}
