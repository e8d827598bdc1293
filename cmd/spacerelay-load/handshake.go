package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// handshakeReport is the handshake mode's finding: the rate of
// upgrade-to-hello with every session kept open until all are open (so no
// close competes with the handshakes), and the CPU time both processes
// spent per handshake in that phase and per close after it.
type handshakeReport struct {
	Sessions            int      `json:"sessions"`
	OpenMS              float64  `json:"open_ms"` // first dial to last hello
	HandshakesPerSecond float64  `json:"handshakes_per_second"`
	RelayCPUPerOpen     *float64 `json:"relay_cpu_us_per_handshake,omitempty"`
	LoadCPUPerOpen      float64  `json:"load_cpu_us_per_handshake"`
	RelayCPUPerClose    *float64 `json:"relay_cpu_us_per_close,omitempty"`
	LoadCPUPerClose     float64  `json:"load_cpu_us_per_close"`
}

// runHandshake opens --sessions sessions as fast as --parallel allows,
// waits until all have their hello (or failed), then closes them all.
func runHandshake(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	stop, err := maybeSpawn(ctx, &cfg, stderr, nil, nil)
	if err != nil {
		return nil, err
	}
	defer stop()
	cfg.hold, cfg.jobs = -1, 0
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	r, err := newLoadRun(cfg)
	if err != nil {
		return nil, err
	}
	metrics := cfg.metricsFromURL()
	open := startCPU(metrics)
	start := time.Now()
	r.openAll(ctx, 0, cfg.sessions)
	opened := open.stop()
	closing := startCPU(metrics)
	cancel()
	rec, started := r.result()
	closed := closing.stop()
	rep := newReport(cfg, rec, started, time.Since(start))
	rep.CPU = &cpuReport{LoadSeconds: opened.LoadSeconds + closed.LoadSeconds}
	hs := &handshakeReport{Sessions: rec.sessionsOpened, HandshakesPerSecond: rep.Sessions.HandshakesPerSecond,
		OpenMS: ms(rec.lastHello.Sub(rec.firstDial))}
	if n := float64(rec.sessionsOpened); n > 0 {
		hs.LoadCPUPerOpen, hs.LoadCPUPerClose = opened.LoadSeconds/n*1e6, closed.LoadSeconds/n*1e6
		if opened.RelaySeconds != nil && closed.RelaySeconds != nil {
			o, c := *opened.RelaySeconds/n*1e6, *closed.RelaySeconds/n*1e6
			hs.RelayCPUPerOpen, hs.RelayCPUPerClose = &o, &c
			total := *opened.RelaySeconds + *closed.RelaySeconds
			rep.CPU.RelaySeconds = &total
		}
	}
	rep.Handshake = hs
	return rep, nil
}

func (h *handshakeReport) text(b *strings.Builder) {
	if h == nil {
		return
	}
	fmt.Fprintf(b, "handshake  %d sessions open in %.0f ms: %.0f upgrade-to-hello per second\n", h.Sessions, h.OpenMS, h.HandshakesPerSecond)
	if h.RelayCPUPerOpen != nil {
		fmt.Fprintf(b, "           cpu per handshake: relay %.0f µs, load generator %.0f µs; per close: relay %.0f µs, load generator %.0f µs\n",
			*h.RelayCPUPerOpen, h.LoadCPUPerOpen, *h.RelayCPUPerClose, h.LoadCPUPerClose)
	}
}
