package gradiotest

import (
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStart(t *testing.T) {
	for _, py := range Pythons(t) {
		t.Run(py.Version, func(t *testing.T) {
			t.Parallel()
			srv := Start(t, py, Options{StepSeconds: 0.01, QuotaSeconds: 5})
			if srv.Version != py.Version {
				t.Errorf("Version = %q, want %q", srv.Version, py.Version)
			}

			var config struct {
				APIPrefix string `json:"api_prefix"`
				Protocol  string `json:"protocol"`
			}
			getJSON(t, srv.URL+"/config", &config)
			if config.APIPrefix != "/gradio_api" || config.Protocol != "sse_v3" {
				t.Errorf("/config: api_prefix %q, protocol %q; want /gradio_api, sse_v3",
					config.APIPrefix, config.Protocol)
			}
			var journal []map[string]string
			getJSON(t, srv.URL+"/fixture/journal", &journal)
			if len(journal) != 0 {
				t.Errorf("/fixture/journal = %v, want []", journal)
			}

			srv.stop()
			// uvicorn shuts down, then re-raises SIGTERM to exit.
			if got := exitSignal(srv.err); got != syscall.SIGTERM {
				t.Errorf("stop: exit status %v, want a clean exit on SIGTERM", srv.err)
			}
			srv.Kill() // harmless once stopped
		})
	}
}

func TestKill(t *testing.T) {
	for _, py := range Pythons(t) {
		t.Run(py.Version, func(t *testing.T) {
			t.Parallel()
			srv := Start(t, py, Options{})
			srv.Kill()
			srv.Kill()
			if got := exitSignal(srv.err); got != syscall.SIGKILL {
				t.Errorf("Kill: exit status %v, want signal: killed", srv.err)
			}
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			if resp, err := client.Get(srv.URL + "/config"); err == nil {
				resp.Body.Close()
				t.Errorf("GET /config after Kill: %s, want an error", resp.Status)
			}
		})
	}
}

// exitSignal returns the signal that ended a process whose Wait returned
// err, or -1 if it exited on its own.
func exitSignal(err error) syscall.Signal {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return -1
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return -1
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
