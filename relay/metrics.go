package relay

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// metrics are a Server's Prometheus metrics, in a registry of its own (so
// that Servers in parallel tests do not collide). No label ever holds a
// token or a session id.
type metrics struct {
	reg *prometheus.Registry

	sessionsOpen   prometheus.Gauge
	sessionsOpened prometheus.Counter
	refused        *prometheus.CounterVec // reason: a refusal code, or accept_failed
	jobs           *prometheus.CounterVec // outcome, code
	queueWait      prometheus.Histogram
	jobDuration    prometheus.Histogram
	bytesSent      *prometheus.CounterVec // kind: text or file
	textBytes      prometheus.Counter     // bytesSent's two series, looked up once
	fileBytes      prometheus.Counter
	relayed        prometheus.Histogram
	filesSent      prometheus.Counter
	slowConsumers  prometheus.Counter
	refreshes      *prometheus.CounterVec // outcome: refreshed, or a refusal code
	upstreamReady  prometheus.Gauge
}

// jobBuckets are the buckets of the job histograms, in seconds: from a
// cached answer to a long ZeroGPU queue.
var jobBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}

// relayBuckets are the buckets of the relay's own delay per message, in
// seconds, fine around its 2 ms target.
var relayBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessionsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spacerelay_sessions_open", Help: "Browser sessions open now.",
		}),
		sessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spacerelay_sessions_opened_total", Help: "Browser sessions accepted.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spacerelay_handshakes_refused_total", Help: "WebSocket upgrade requests refused, by refusal code.",
		}, []string{"reason"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spacerelay_jobs_total", Help: "Jobs ended, by outcome (completed, error, cancelled, or ended: the session ended first) and error code. A job counts once it holds one of its session's max_jobs places; a submit refused before that (too_many_jobs, token_expired, invalid_input) is no job.",
		}, []string{"outcome", "code"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spacerelay_job_queue_wait_seconds", Help: "Time jobs waited in the upstream queue, from accepted to started.",
			Buckets: jobBuckets,
		}),
		jobDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spacerelay_job_duration_seconds", Help: "Time from a job's submit to its end.",
			Buckets: jobBuckets,
		}),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spacerelay_bytes_sent_total", Help: "Bytes written to browsers, by kind: text (JSON messages) or file (binary frames).",
		}, []string{"kind"}),
		relayed: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spacerelay_message_relay_seconds",
			Help:    "Time a job's message spent in the relay: from its upstream event being read to the end of its write to the browser (messages without files).",
			Buckets: relayBuckets,
		}),
		filesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spacerelay_files_sent_total", Help: "Files written to browsers.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spacerelay_token_refreshes_total", Help: "Token refresh requests, by outcome: refreshed, or the refusal's code.",
		}, []string{"outcome"}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spacerelay_slow_consumer_disconnects_total", Help: "Sessions closed because the browser did not read in time.",
		}),
		upstreamReady: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spacerelay_upstream_ready", Help: "1 once the upstream's API is known, else 0.",
		}),
	}
	m.reg.MustRegister(m.sessionsOpen, m.sessionsOpened, m.refused, m.jobs, m.queueWait,
		m.jobDuration, m.bytesSent, m.relayed, m.filesSent, m.slowConsumers, m.refreshes, m.upstreamReady,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, code := range refusalCodes { // show every reason, at 0
		m.refused.WithLabelValues(code)
	}
	m.textBytes = m.bytesSent.WithLabelValues("text")
	m.fileBytes = m.bytesSent.WithLabelValues("file")
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// hooks feeds the metrics from every session.
func (m *metrics) hooks() session.Hooks {
	return session.Hooks{
		JobEnded: func(st session.JobStats) {
			m.jobs.WithLabelValues(st.Outcome, st.Code).Inc()
			if st.QueueWait > 0 {
				m.queueWait.Observe(st.QueueWait.Seconds())
			}
			m.jobDuration.Observe(st.Duration.Seconds())
		},
		Sent: func(kind string, n int) {
			if kind == "file" { // one binary message per file
				m.fileBytes.Add(float64(n))
				m.filesSent.Inc()
				return
			}
			m.textBytes.Add(float64(n))
		},
		Relayed: func(d time.Duration) { m.relayed.Observe(d.Seconds()) },
	}
}

// jobEnded logs each job's end: at debug, a failure at info, and its
// cause (which the page is not told) when debug is on. Never a token: the
// session's errors hold none (the upstream redacts what a Space echoes).
func (s *Server) jobEnded(next func(session.JobStats)) func(session.JobStats) {
	return func(st session.JobStats) {
		next(st)
		switch {
		case errors.Is(st.Err, upstream.ErrSessionLost): // a redeploy
			s.suspectRedeploy()
		case st.Code == string(upstream.CodeUnavailable):
			s.suspectDown()
		}
		level := slog.LevelDebug
		attrs := []slog.Attr{
			slog.String("session", st.Session), slog.String("job", st.Job),
			slog.String("endpoint", st.Endpoint), slog.String("outcome", st.Outcome),
			slog.Duration("duration", st.Duration.Round(time.Millisecond)),
		}
		if st.Outcome == "error" {
			level = slog.LevelInfo
			attrs = append(attrs, slog.String("code", st.Code))
			// The cause (an address, a Go error) only at debug.
			if st.Err != nil && s.logger().Enabled(context.Background(), slog.LevelDebug) {
				attrs = append(attrs, slog.String("err", st.Err.Error()))
			}
		}
		s.logger().LogAttrs(context.Background(), level, "job ended", attrs...)
	}
}
