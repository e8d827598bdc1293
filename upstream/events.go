package upstream

import "time"

// An Event is one step in the life of a job, as the upstream reports it.
// ReadAt tells when the message that brought it was read.
// Its concrete type is one of *Accepted, *Queued, *Started, *Progress, *Log,
// *Partial, *Completed and *Cancelled. Completed and Cancelled are terminal;
// a failed job ends with an error from Stream instead (see *Error).
type Event interface{ event() }

// Accepted reports that the upstream queue took the job.
type Accepted struct {
	EventID string // the upstream's id for the job
}

// Queued reports the job's place in the upstream queue.
type Queued struct {
	readTime
	Rank      int      // jobs ahead of this one; 0 means next
	QueueSize int      // jobs waiting in all
	ETA       *float64 // seconds until the job starts, if the upstream knows
}

// Started reports that a worker picked the job up.
type Started struct {
	readTime
	ETA *float64 // the endpoint's average run time in seconds, if known
}

// Progress reports the job's progress bars, outermost first.
type Progress struct {
	readTime
	Steps []ProgressStep
}

// ProgressStep is one progress bar of a job (gr.Progress or tqdm).
type ProgressStep struct {
	Index    *float64 `json:"index"`
	Length   *float64 `json:"length"`
	Unit     *string  `json:"unit"`
	Progress *float64 `json:"progress"`
	Desc     *string  `json:"desc"`
}

// Log is a notice the app showed while running the job (gr.Info, gr.Warning,
// gr.Success, and ZeroGPU's "Waiting for a GPU" messages).
type Log struct {
	readTime
	Level   string // "info", "warning", "success" or "error"
	Title   string
	Message string
}

// Partial is an intermediate output of a generator endpoint, with Gradio's
// edit lists already applied: Data holds full values, one per output.
type Partial struct {
	readTime
	Data []any
}

// Completed is the job's result: one value per output of the endpoint
// (State outputs left out). Files in Data are FileData objects (see Files).
type Completed struct {
	readTime
	Data     []any
	Duration float64 // seconds the upstream spent running the job, 0 if unknown
}

// Cancelled reports that the upstream cancelled the job.
type Cancelled struct{ readTime }

func (*Accepted) event()  {}
func (*Queued) event()    {}
func (*Started) event()   {}
func (*Progress) event()  {}
func (*Log) event()       {}
func (*Partial) event()   {}
func (*Completed) event() {}
func (*Cancelled) event() {}

// readTime is when the stream message an event came from was read.
type readTime struct{ at time.Time }

func (r *readTime) setRead(t time.Time) { r.at = t }
func (r *readTime) readAt() time.Time   { return r.at }

// ReadAt returns when the upstream client read, off its stream's socket,
// the message that became ev: the start of its way through a relay. It is
// the zero Time for an event no stream message brought (Accepted).
func ReadAt(ev Event) time.Time {
	if r, ok := ev.(interface{ readAt() time.Time }); ok {
		return r.readAt()
	}
	return time.Time{}
}
