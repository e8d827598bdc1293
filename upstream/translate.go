package upstream

import (
	"fmt"
	"time"
)

// translator turns one job's stream messages into Events. It keeps the
// job's current outputs, to apply a generator's edit lists.
type translator struct {
	// Static after construction (in Session.follow).
	api     *API
	ep      *Endpoint
	secrets []string // the visitor's token and the relay's: never in an app's error text

	// Owned by the follower that holds it, on Follow's goroutine.
	prev []any // full output values of the last process_generating
	seen bool  // a process_generating has arrived
}

// editLists reports whether the upstream sends a generator's updates
// after the first as edit lists even when a join asks for full values
// ("simple_format", Gradio 4.20 and later): Gradio 4.17 to 4.19.
func (a *API) editLists() bool { return a.diffs && versionLess(a.Version, 4, 20) }

// droppable reports whether a newer message of m's kind may replace m
// before its job takes it: a queue position, a progress report, or a
// partial output that carries full values.
func (a *API) droppable(m *message) bool {
	switch m.Msg {
	case "estimation", "progress":
		return true
	case "process_generating", "process_streaming":
		return a == nil || !a.editLists()
	}
	return false
}

// event translates m. It returns a nil Event for messages that carry
// nothing for the caller, and an error when the job failed.
func (t *translator) event(m *message) (Event, error) {
	ev, err := t.translate(m)
	if r, ok := ev.(interface{ setRead(time.Time) }); ok {
		r.setRead(m.read)
	}
	return ev, err
}

func (t *translator) translate(m *message) (Event, error) {
	switch m.Msg {
	case "estimation":
		if m.Rank == nil {
			return nil, nil
		}
		q := &Queued{Rank: *m.Rank, ETA: m.RankETA}
		if m.QueueSize != nil {
			q.QueueSize = *m.QueueSize
		}
		return q, nil
	case "process_starts":
		return &Started{ETA: m.ETA}, nil
	case "progress":
		return &Progress{Steps: m.ProgressData}, nil
	case "log":
		return &Log{Level: m.Level, Title: str(m.Title), Message: str(m.Log)}, nil
	case "process_generating", "process_streaming":
		return t.partial(m)
	case "process_completed":
		return t.completed(m)
	}
	return nil, nil
}

func (t *translator) partial(m *message) (Event, error) {
	if !m.Success {
		return nil, nil // the failure follows in process_completed
	}
	out, err := m.decodeOutput()
	if err != nil {
		return nil, broken("a partial output", err)
	}
	if !t.seen || !t.api.editLists() || m.Msg == "process_streaming" {
		t.seen, t.prev = true, out.Data
		return &Partial{Data: t.ep.outputs(out.Data)}, nil
	}
	next := make([]any, len(out.Data))
	for i, edits := range out.Data {
		var old any
		if i < len(t.prev) {
			old = t.prev[i]
		}
		if next[i], err = applyEdits(old, edits); err != nil {
			return nil, broken("a partial output's edit list", err)
		}
	}
	t.prev = next
	return &Partial{Data: t.ep.outputs(next)}, nil
}

func (t *translator) completed(m *message) (Event, error) {
	out, err := m.decodeOutput()
	if err != nil {
		return nil, broken("the result", err)
	}
	if !m.Success {
		title := str(out.Title)
		if title == "" {
			title = str(m.Title)
		}
		e := appError(title, out.Error, t.api.legacyQuoted)
		redact(e, t.secrets...) // an app may echo the headers it got
		return nil, e
	}
	if out.Data == nil {
		return &Cancelled{}, nil // the synthetic completion of a cancel
	}
	c := &Completed{Data: t.ep.outputs(out.Data)}
	if out.Duration != nil {
		c.Duration = *out.Duration
	}
	// Gradio's duration of a generator is its last step's: the job's run
	// time is its steps' together (the upstream's own clock).
	c.Duration += m.ran
	return c, nil
}

func broken(what string, err error) *Error {
	return &Error{Code: CodeUnavailable, Message: msgBadAnswer, Err: fmt.Errorf("stream: %s could not be read: %w", what, err)}
}
