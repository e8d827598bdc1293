package demospace

import (
	"context"
	"errors"
	"time"
)

// appError is a gr.Error: its message and title reach the client.
type appError struct {
	message string
	title   string
}

func (e *appError) Error() string { return e.title + ": " + e.message }

// errHidden is any other exception: with show_error=False the client only
// learns that something failed ({"error": null}).
var errHidden = errors.New("demospace: app error")

// errDead stops a generator whose client is gone.
var errDead = errors.New("demospace: event is no longer alive")

// call is one job as the app function sees it: its inputs, the clock of
// the current process_api call, and the ways to report progress.
type call struct {
	s     *Space
	ev    *event
	ctx   context.Context // cancelled by /cancel and Close
	begin time.Time       // start of the current process_api call
	last  []any           // outputs of the generator's last yield
}

// runJob runs ev on its own goroutine and reports its end.
func (s *Space) runJob(ctx context.Context, ev *event) {
	defer s.wg.Done()
	c := &call{s: s, ev: ev, ctx: ctx, begin: s.now()}
	out, err := ev.fn.run(c)
	s.finish(c, out, err)
}

// finish sends the job's process_completed, updates the averages, and
// frees its worker. A cancelled job (Gradio: a cancelled task) sends
// nothing; a dead one sends into the void.
func (s *Space) finish(c *call, out []any, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := c.ev
	defer s.finishLocked(ev)
	if c.ctx.Err() != nil || errors.Is(err, errDead) {
		return
	}
	if err != nil {
		output, title := errorOutput(err)
		s.emitLocked(ev, completedMsg(ev.id, output, false, title))
		return
	}
	stats := &s.stats[ev.fn.index]
	dur := s.since(c.begin)
	avg := stats.addCall(dur)
	s.emitLocked(ev, completedMsg(ev.id, successOutput(out, false, dur, avg), true, nil))
	stats.eventTime += s.since(ev.started)
	stats.events++
}

func (s *Space) since(t time.Time) float64 { return s.now().Sub(t).Seconds() }

// yield sends a generator's outputs as process_generating: full values the
// first time (or always, with simple_format), Gradio's edit lists after.
// It returns errDead if the event's stream is gone.
func (c *call) yield(out []any) error {
	s, ev := c.s, c.ev
	s.mu.Lock()
	defer s.mu.Unlock()
	dur := s.since(c.begin)
	avg := s.stats[ev.fn.index].addCall(dur)
	data := out
	if c.last != nil && !ev.simple {
		data = make([]any, len(out))
		for i := range out {
			data[i] = diff(c.last[i], out[i])
		}
	}
	s.emitLocked(ev, generatingMsg(ev.id, successOutput(data, true, dur, avg)))
	c.last = out
	if !ev.alive {
		return errDead
	}
	c.begin = s.now()
	return nil
}

// sleep waits one step, or returns the context's error if the job is
// cancelled first.
func (c *call) sleep() error {
	t := time.NewTimer(c.s.cfg.StepDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

// log sends what gr.Info / gr.Success send.
func (c *call) log(level, text, title string) {
	c.s.emit(c.ev, logMsg(c.ev.id, level, text, title))
}

func (c *call) progress(index, length int) {
	c.s.emit(c.ev, progressMsg(c.ev.id, index, length, "steps"))
}

func (c *call) journal(what, prompt string) {
	c.s.journal.add(journalEntry{event: what, endpoint: "/" + c.ev.fn.name, prompt: prompt,
		token: c.ev.caller.digest, session: c.ev.session})
}

// image renders prompt's image (see render) and returns its FileData, as
// gr.Image with format="png" returns it.
func (c *call) image(prompt string, width, height, rows int) object {
	return c.fileData(c.s.files.rendered(prompt, width, height, rows, c.s.now()), "image.png")
}

// fileData is the FileData of a stored file, with its URL under the root
// of the job's join.
func (c *call) fileData(p, name string) object {
	return object{
		{"path", p}, {"url", c.ev.root + apiPrefix + "/file=" + p},
		{"size", nil}, {"orig_name", name}, {"mime_type", nil},
		{"is_stream", false}, {"meta", object{{"_type", "gradio.FileData"}}},
	}
}
