package demospace

import (
	"net/http"
	"sync"
)

// journalEntry is one line of the test journal of SPEC.md.
type journalEntry struct {
	event    string // started, completed, cancelled or quota
	endpoint string // "/generate" or "/preview"
	prompt   string
	token    string // the token digest
	session  string // the session_hash of the join
}

// journal keeps the last max entries, oldest first, in a ring.
// Make one with newJournal.
type journal struct {
	mu      sync.Mutex
	entries []journalEntry // ring of capacity max
	next    int            // where the next entry goes once the ring is full
	max     int
}

func newJournal(max int) *journal {
	return &journal{max: max}
}

func (j *journal) add(e journalEntry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.entries) < j.max {
		j.entries = append(j.entries, e)
		return
	}
	j.entries[j.next] = e
	j.next = (j.next + 1) % j.max
}

// list returns the entries oldest first, as JSON objects.
func (j *journal) list() []any {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]any, 0, len(j.entries))
	for i := range j.entries {
		e := j.entries[(j.next+i)%len(j.entries)]
		out = append(out, object{
			{"event", e.event}, {"endpoint", e.endpoint}, {"prompt", e.prompt},
			{"token", e.token}, {"session", e.session},
		})
	}
	return out
}

func (j *journal) clear() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries, j.next = nil, 0
}

// serveJournal answers GET (the entries) and DELETE (clear; 204 as the
// FastAPI route of app.py) on /fixture/journal.
func (j *journal) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, j.list())
	case http.MethodDelete:
		j.clear()
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w)
	}
}
