package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestLocalAddr(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		":7860":          "127.0.0.1:7860",
		"0.0.0.0:7860":   "127.0.0.1:7860",
		"[::]:7860":      "127.0.0.1:7860",
		"127.0.0.1:9000": "127.0.0.1:9000",
		"[::1]:9000":     "[::1]:9000",
		"localhost:80":   "localhost:80",
	}
	for listen, want := range tests {
		if got := localAddr(listen); got != want {
			t.Errorf("localAddr(%q) = %q, want %q", listen, got, want)
		}
	}
}

// TestHealthcheck runs --healthcheck against a running relay (found by
// --listen, or by SPACERELAY_LISTEN with no host, as in the Dockerfile),
// against a server that is not healthy, and against a closed port. It is
// the Dockerfile's HEALTHCHECK: exit 0 only for a 200 of /healthz.
func TestHealthcheck(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	url, out, stop := startRun(t, nil, env{})
	defer stop()
	hostport := strings.TrimPrefix(url, "http://")
	_, port, _ := net.SplitHostPort(hostport)
	ctx := context.Background()
	if err := run(ctx, []string{"--healthcheck", "--listen", hostport}, env{}.get, out); err != nil {
		t.Errorf("--healthcheck --listen %s = %v, want nil", hostport, err)
	}
	if err := run(ctx, []string{"--healthcheck"}, env{"SPACERELAY_LISTEN": ":" + port}.get, out); err != nil {
		t.Errorf("--healthcheck with SPACERELAY_LISTEN=:%s = %v, want nil", port, err)
	}

	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("--healthcheck asked for %s, want /healthz", r.URL.Path)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer sick.Close()
	sickAddr := strings.TrimPrefix(sick.URL, "http://")
	err := run(ctx, []string{"--healthcheck", "--listen", sickAddr}, env{}.get, out)
	if exitCode(err) != 1 || err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("--healthcheck of a 503 = %v (exit %d), want an error naming 503, exit 1", err, exitCode(err))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if err := run(ctx, []string{"--healthcheck", "--listen", closed}, env{}.get, out); exitCode(err) != 1 {
		t.Errorf("--healthcheck of a closed port = %v (exit %d), want exit 1", err, exitCode(err))
	}
}
