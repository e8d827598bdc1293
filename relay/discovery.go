package relay

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// Discovery backoff: the wait after the first failure, doubled after each
// next one up to the maximum.
const (
	discoveryFirstWait = time.Second
	discoveryMaxWait   = 30 * time.Second
)

// discover calls s.API until it succeeds or the Server shuts down. It logs
// a failure when it differs from the one before, not at every attempt.
func (s *Server) discover() {
	defer s.wg.Done()
	wait := discoveryFirstWait
	var last string
	for {
		api, err := s.API(s.base)
		if err == nil {
			s.ready(api)
			return
		}
		if s.base.Err() != nil {
			return
		}
		s.state.Store(&readiness{state: "unavailable", message: messageFor(err)})
		if msg := err.Error(); msg != last {
			s.logger().Warn("upstream discovery failed", "err", err, "retry_in", wait)
			last = msg
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.base.Done():
			t.Stop()
			return
		}
		wait = min(2*wait, discoveryMaxWait)
	}
}

// ready makes api the upstream's API: from now on the Server accepts
// sessions.
func (s *Server) ready(api *upstream.API) {
	s.api.Store(api)
	s.state.Store(&readiness{state: "ready"})
	s.metrics.upstreamReady.Set(1)
	names := make([]string, len(api.Endpoints))
	for i, ep := range api.Endpoints {
		names[i] = ep.Name
	}
	s.logger().Info("upstream ready", "url", api.BaseURL, "gradio", api.Version, "endpoints", names)
	if s.DefaultEndpoint == "" {
		return
	}
	if _, err := api.Endpoint(s.DefaultEndpoint); err != nil {
		s.logger().Warn("the default endpoint is not an endpoint of the upstream", "endpoint", s.DefaultEndpoint, "err", err)
	}
}

// readiness is what the Server knows of the upstream, for /readyz:
// discover's last finding. discover replaces it whole; it is never changed.
type readiness struct {
	state   string // "starting" (no answer yet), "unavailable" or "ready"
	message string // for people: why the upstream is unavailable
}

// messageFor is a discovery error as a person may read it: the message
// the upstream package wrote for people, or a neutral one (the error's
// detail is in the log).
func messageFor(err error) string {
	var e *upstream.Error
	switch {
	case !errors.As(err, &e):
	case e.Message != "":
		return e.Message
	case e.Title != "":
		return e.Title
	}
	return "the Space cannot be reached right now"
}

// readyzBody is GET /readyz's answer.
type readyzBody struct {
	Ready      bool   `json:"ready"`
	State      string `json:"state"` // ready, starting, unavailable or draining
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after,omitempty"` // seconds, when not ready
}

// readyz answers 200 when the Server takes sessions and 503 when not, with
// what it knows as JSON: the demo page shows it while it waits.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	st := *s.state.Load()
	if s.isDraining() {
		st = readiness{state: "draining"}
	}
	b := readyzBody{State: st.state, Message: st.message, RetryAfter: retryUnavailable}
	switch st.state {
	case "ready":
		b.Ready, b.Message, b.RetryAfter = true, "the relay is ready", 0
	case "starting":
		b.Message = "the relay is fetching the Space's API"
	case "draining":
		b.Message, b.RetryAfter = "the relay is shutting down", retryShuttingDown
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !b.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	body, _ := json.Marshal(b) // cannot fail
	w.Write(append(body, '\n'))
}
