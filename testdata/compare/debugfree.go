// This file is no package of its own: compare.py compiles it into
// cmd/spacerelay with "go build -overlay" (as cmd/spacerelay/zz_compare_debugfree.go),
// so that the relay the comparison measures is the production binary plus
// one measuring endpoint, which a production relay must not have. It is the
// same endpoint as the /debug/free of "spacerelay-load serve", on a listener
// of its own, only when COMPARE_DEBUG_FREE_ADDR names a loopback address:
//
//	GET /debug/free    a garbage collection, then every free page back to the OS
//	                   (debug.FreeOSMemory); once done, answers with the runtime's
//	                   own account of its memory then (runtime/metrics, bytes), as
//	                   a JSON object
//
// compare.py calls it before each memory reading of the relay, as it has
// Space A run gc.collect() and malloc_trim(0) before each of Space A's.

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"
)

// compareMemoryMetrics are the runtime/metrics /debug/free reports.
var compareMemoryMetrics = []string{
	"/memory/classes/total:bytes",          // mapped by the runtime
	"/memory/classes/heap/objects:bytes",   // live objects (and unswept dead ones: none after a GC)
	"/memory/classes/heap/free:bytes",      // free heap pages still resident
	"/memory/classes/heap/released:bytes",  // free heap pages returned to the OS
	"/memory/classes/heap/stacks:bytes",    // goroutine stacks
	"/memory/classes/heap/unused:bytes",    // free room in spans in use (fragmentation)
	"/memory/classes/metadata/other:bytes", // the runtime's bookkeeping
	"/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/os-stacks:bytes",
	"/memory/classes/other:bytes",
	"/memory/classes/profiling/buckets:bytes",
	"/sched/goroutines:goroutines",
}

func init() {
	addr := os.Getenv("COMPARE_DEBUG_FREE_ADDR")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "spacerelay: COMPARE_DEBUG_FREE_ADDR: %q is not a loopback ip:port\n", addr)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spacerelay: COMPARE_DEBUG_FREE_ADDR:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/free", func(w http.ResponseWriter, r *http.Request) {
		debug.FreeOSMemory()
		samples := make([]metrics.Sample, len(compareMemoryMetrics))
		for i, name := range compareMemoryMetrics {
			samples[i].Name = name
		}
		metrics.Read(samples)
		out := map[string]uint64{}
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				name, _, _ := strings.Cut(strings.TrimPrefix(s.Name, "/"), ":")
				out[strings.NewReplacer("/", "_", "-", "_").Replace(name)] = s.Value.Uint64()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) // for the life of the process
}
