package upstream

import (
	"bytes"
	"encoding/json"
	"time"
)

// message is one message of a queue/data stream (GRADIO.md section 2.3).
// Fields of every kind are together; msg says which are set.
type message struct {
	Msg     string  `json:"msg"`
	EventID *string `json:"event_id"`

	// estimation
	Rank      *int     `json:"rank"`
	QueueSize *int     `json:"queue_size"`
	RankETA   *float64 `json:"rank_eta"`
	// process_starts
	ETA *float64 `json:"eta"`
	// progress
	ProgressData []ProgressStep `json:"progress_data"`
	// log
	Log   *string `json:"log"`
	Level string  `json:"level"`
	Title *string `json:"title"` // log and process_completed
	// process_generating, process_streaming, process_completed
	Output  json.RawMessage `json:"output"`
	Success bool            `json:"success"`
	// unexpected_error
	Message         *string `json:"message"`
	SessionNotFound bool    `json:"session_not_found"`

	read time.Time // when its last bytes were read off the socket
	step float64   // on a generator's step: the seconds it ran (stepDuration), read by the stream's reader
	ran  float64   // on a generator's process_completed: the seconds its steps ran before it
}

// stepDuration is the seconds a generator's step ran, as the upstream
// measured it (process_generating's output.duration), or 0.
func (m *message) stepDuration() float64 {
	var o struct {
		Duration *float64 `json:"duration"`
	}
	if json.Unmarshal(m.Output, &o) != nil || o.Duration == nil {
		return 0
	}
	return *o.Duration
}

// output is the output field of a process_* message.
type output struct {
	Data     []any    `json:"data"`
	Duration *float64 `json:"duration"`
	Error    *string  `json:"error"`
	Title    *string  `json:"title"`
}

// decodeMessage decodes one message of a stream.
func decodeMessage(b []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// decodeOutput decodes the output of a process_* message. A cancelled job's
// synthetic completion has no data: Data is then nil.
func (m *message) decodeOutput() (output, error) {
	var out output
	if len(m.Output) == 0 {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(m.Output))
	dec.UseNumber()
	err := dec.Decode(&out)
	return out, err
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
