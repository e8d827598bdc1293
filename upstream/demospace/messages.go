package demospace

// Message kinds of gradio/server_messages.py.
const (
	kindEstimation = "estimation"
	kindStarts     = "process_starts"
	kindProgress   = "progress"
	kindLog        = "log"
	kindGenerating = "process_generating"
	kindCompleted  = "process_completed"
	kindHeartbeat  = "heartbeat"
	kindClose      = "close_stream"
	kindUnexpected = "unexpected_error"
)

// outMsg is one encoded message waiting in a session's queue.
type outMsg struct {
	kind    string
	eventID string // "" for stream-level messages
	body    []byte // the JSON object
}

// newMsg builds {"msg": kind, "event_id": id or null, fields...}; every
// field is present, nulls included, as pydantic's model_dump gives them.
func newMsg(kind, eventID string, fields ...member) outMsg {
	o := make(object, 0, len(fields)+2)
	var id any
	if eventID != "" {
		id = eventID
	}
	o = append(o, member{"msg", kind}, member{"event_id", id})
	o = append(o, fields...)
	return outMsg{kind: kind, eventID: eventID, body: encodeJSON(o)}
}

func estimationMsg(id string, rank, size int, eta *float64) outMsg {
	return newMsg(kindEstimation, id, member{"rank", rank}, member{"queue_size", size}, member{"rank_eta", optFloat(eta)})
}

func startsMsg(id string, eta *float64) outMsg {
	return newMsg(kindStarts, id, member{"eta", optFloat(eta)})
}

// progressMsg reports step index of length, as gr.Progress((i, n), unit=...).
func progressMsg(id string, index, length int, unit string) outMsg {
	unitData := object{{"index", index}, {"length", length}, {"unit", unit}, {"progress", nil}, {"desc", nil}}
	return newMsg(kindProgress, id, member{"progress_data", []any{unitData}})
}

// logMsg is what gr.Info / gr.Success / gr.Warning send (duration 10.0).
func logMsg(id, level, text, title string) outMsg {
	return newMsg(kindLog, id, member{"log", text}, member{"level", level},
		member{"duration", pyFloat(10)}, member{"visible", true}, member{"title", title})
}

func generatingMsg(id string, output object) outMsg {
	return newMsg(kindGenerating, id, member{"output", output}, member{"success", true}, member{"time_limit", nil})
}

// completedMsg is process_completed. On success cache_duration and
// avg_time repeat the output's duration and average_duration, as Gradio
// 6.31 does.
func completedMsg(id string, output object, success bool, title any) outMsg {
	var dur, avg any
	if success {
		dur, avg = output.get("duration"), output.get("average_duration")
	}
	return newMsg(kindCompleted, id, member{"output", output}, member{"success", success},
		member{"title", title}, member{"used_cache", nil}, member{"cache_duration", dur}, member{"avg_time", avg})
}

// cancelledMsg is the synthetic completion /cancel pushes: no data.
func cancelledMsg(id string) outMsg {
	return completedMsg(id, object{}, true, nil)
}

var (
	heartbeatMsg = newMsg(kindHeartbeat, "")
	closeMsg     = newMsg(kindClose, "")
	notFoundMsg  = newMsg(kindUnexpected, "", member{"message", "404: Not Found"},
		member{"session_not_found", true}, member{"success", false})
	stoppedMsg = newMsg(kindUnexpected, "", member{"message", "Server stopped unexpectedly."},
		member{"session_not_found", false}, member{"success", false})
)

// successOutput is the output dict of Blocks.process_api.
func successOutput(data []any, generating bool, duration, average float64) object {
	return object{
		{"data", data}, {"is_generating", generating},
		{"duration", pyFloat(duration)}, {"average_duration", pyFloat(average)},
		{"render_config", nil}, {"changed_state_ids", []any{}}, {"used_cache", nil},
	}
}

// errorOutput is utils.error_payload with show_error=False: a gr.Error
// shows its message and title, anything else only {"error": null}.
func errorOutput(err error) (output object, title string) {
	if e, ok := err.(*appError); ok {
		return object{{"error", e.message}, {"duration", 10}, {"visible", true}, {"title", e.title}}, e.title
	}
	return object{{"error", nil}}, "Error"
}
