package relay

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// Discovery backoff: the wait after the first failure, doubled after each
// next one up to the maximum.
const (
	discoveryFirstWait = time.Second
	discoveryMaxWait   = 30 * time.Second
)

// discover calls s.API until it succeeds or the Server shuts down, then
// watches the upstream (see watch). It logs a failure when it differs from
// the one before, not at every attempt.
func (s *Server) discover() {
	defer s.wg.Done()
	wait := discoveryFirstWait
	var last string
	for {
		api, err := s.API(s.base)
		if err == nil {
			s.ready(api)
			s.watch()
			return
		}
		if s.base.Err() != nil {
			return
		}
		s.state.Store(&readiness{state: "unavailable", message: messageFor(err), stage: stageOf(err)})
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
	for _, sk := range api.Skipped {
		s.logger().Warn("endpoint left out: the relay cannot describe it", "endpoint", sk.Name, "why", sk.Reason)
	}
	if s.DefaultEndpoint == "" {
		return
	}
	if _, err := api.Endpoint(s.DefaultEndpoint); err != nil {
		s.logger().Warn("the default endpoint is not an endpoint of the upstream", "endpoint", s.DefaultEndpoint, "err", err)
	}
}

// watch asks the upstream for its API again (Rediscover) every
// RediscoverEvery, and at once when a job met a sign of a redeploy (see
// suspectRedeploy), until the Server shuts down. While the Space cannot be
// reached, /readyz says so and new sockets are refused (4503
// upstream_unavailable); the sessions open go on. When the API has
// changed, it takes the new one and closes the sessions of the old with
// 1012: their pages reconnect and read the new hello.
func (s *Server) watch() {
	if s.Rediscover == nil {
		return
	}
	t := time.NewTimer(s.rediscoverEvery())
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.redeploy:
		case <-s.base.Done():
			return
		}
		api, err := s.Rediscover(s.base)
		switch {
		case s.base.Err() != nil:
			return
		case err != nil:
			if s.state.Load().state == "ready" {
				s.logger().Warn("the upstream cannot be reached", "err", err)
			}
			s.state.Store(&readiness{state: "unavailable", message: messageFor(err), stage: stageOf(err)})
			s.metrics.upstreamReady.Set(0)
		case api != s.api.Load():
			s.logger().Info("the upstream was redeployed: its API changed")
			s.ready(api)
			s.restartSessions(api)
		case s.state.Load().state != "ready":
			s.ready(api) // back
		}
		t.Reset(s.rediscoverEvery())
	}
}

// suspectGap is the least time between two askings of the upstream for
// jobs that could not reach it.
const suspectGap = 5 * time.Second

// suspectDown makes watch ask the upstream, at most once per suspectGap:
// a job could not reach it, and /readyz is to say so now, not at the next
// poll. However many jobs fail, a struggling Space gets no burst of
// requests.
func (s *Server) suspectDown() {
	now := time.Now().UnixNano()
	if last := s.askedAt.Load(); now-last >= int64(suspectGap) && s.askedAt.CompareAndSwap(last, now) {
		s.suspectRedeploy()
	}
}

// suspectRedeploy makes watch ask the upstream at once: a job found that
// the upstream no longer knew its session.
func (s *Server) suspectRedeploy() {
	select {
	case s.redeploy <- struct{}{}:
	default:
	}
}

// restartSessions closes, with 1012, the sessions that run on another API
// than api.
func (s *Server) restartSessions(api *upstream.API) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.sessions {
		if sl.api != api && sl.end != nil {
			sl.end(session.ErrUpstreamChanged)
		}
	}
}

// stageOf is the Space's runtime stage an error carries, if any.
func stageOf(err error) string {
	var e *upstream.Error
	if errors.As(err, &e) {
		return e.Stage
	}
	return ""
}

// readiness is what the Server knows of the upstream, for /readyz:
// discover's last finding. discover replaces it whole; it is never changed.
type readiness struct {
	state   string // "starting" (no answer yet), "unavailable" or "ready"
	message string // for people: why the upstream is unavailable
	stage   string // the Space's runtime stage, when the Hub said (SLEEPING, BUILDING, …)
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
	Stage      string `json:"stage,omitempty"`       // the Space's runtime stage, when the Hub said
}

// readyz answers 200 when the Server takes sessions and 503 when not, with
// what it knows as JSON: the demo page shows it while it waits.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	st := *s.state.Load()
	if s.isDraining() {
		st = readiness{state: "draining"}
	}
	b := readyzBody{State: st.state, Message: st.message, RetryAfter: retryUnavailable, Stage: st.stage}
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
