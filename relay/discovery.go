package relay

import (
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
