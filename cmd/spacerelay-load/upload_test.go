package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUploadMode(t *testing.T) {
	profileSeconds = 1
	t.Cleanup(func() { profileSeconds = 5 })
	// 1 MiB files in frames of 64 KiB: each upload uses the window (16
	// chunks, 4 in flight); the session takes three, so the relay's four
	// (a warm-up and three measured) need a second session.
	r := startHarness(t, "--upload-sink", "--max-upload-bytes", "1048576",
		"--max-session-upload-bytes", "3145728", "--upload-chunk-bytes", "65536")
	dir := t.TempDir()
	rep := load(t, "--mode", "upload", "--url", r.URL, "--metrics-url", r.Metrics, "--pprof-url", r.Pprof,
		"--upstream-url", r.Upstream, "--jobs", "3", "--file-bytes", "1048576", "--profile-dir", dir)
	u := rep.Upload
	if u == nil || u.Relay == nil || u.Relay.N != 3 || u.Direct == nil || u.Direct.N != 3 {
		t.Fatalf("upload = %+v, want 3 uploads each way", u)
	}
	if u.FileBytes != 1<<20 || u.ChunkBytes != 64<<10 || u.Ratio <= 0 || u.RelayMiBps <= 0 || u.DirectMiBps <= 0 {
		t.Errorf("upload = %+v, want 1 MiB files in 64 KiB frames, and rates", u)
	}
	if u.RelayCPUPerMiB == nil || *u.RelayCPUPerMiB <= 0 {
		t.Errorf("relay CPU per MiB = %v, want it from /metrics", u.RelayCPUPerMiB)
	}
	if rep.Jobs.Completed != 6 || rep.Jobs.Failed != 0 || len(rep.Errors) != 0 || rep.Sessions.Opened < 2 {
		t.Errorf("jobs %+v, sessions %+v, errors %v; want 6 uploads, a second session, no error", rep.Jobs, rep.Sessions, rep.Errors)
	}
	if fi, err := os.Stat(filepath.Join(dir, "upload-cpu.pb.gz")); err != nil || fi.Size() == 0 || u.Profile == "" {
		t.Errorf("profile %q: %v, want the relay's CPU profile saved", u.Profile, err)
	}
	var text strings.Builder
	rep.text(&text)
	for _, want := range []string{"relay (page protocol)", "direct (multipart POST)", "relay/direct at p50", "cpu per MiB"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestUploadOverTheRelaysLimit(t *testing.T) {
	r := startHarness(t, "--max-upload-bytes", "65536")
	var errb bytes.Buffer
	err := run(context.Background(), []string{"--mode", "upload", "--url", r.URL, "--file-bytes", "1048576", "--jobs", "1"}, io.Discard, &errb)
	if err == nil || !strings.Contains(err.Error(), "up to 65536 bytes") {
		t.Errorf("run = %v, want an error that says the relay's limit", err)
	}
}

func TestUploadPresets(t *testing.T) {
	c, err := parseFlags([]string{"--mode", "upload"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.jobs != 20 || c.fileBytes != 8<<20 || c.sessions != 1 || !c.uploadSink {
		t.Errorf("upload presets: jobs %d, file bytes %d, sessions %d, sink %v; want 20 uploads of 8 MiB, one session, the sink",
			c.jobs, c.fileBytes, c.sessions, c.uploadSink)
	}
}

func TestUploadSink(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := httptest.NewServer(uploadSink(next))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/gradio_api/upload", "multipart/form-data; boundary=x", strings.NewReader(strings.Repeat("z", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	err = json.NewDecoder(resp.Body).Decode(&paths)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || len(paths) != 1 || !strings.HasPrefix(paths[0], "/tmp/gradio/") {
		t.Errorf("POST upload: %d, %v, %v; want 200 and one path, as Gradio answers", resp.StatusCode, paths, err)
	}
	resp, err = http.Get(srv.URL + "/gradio_api/upload")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("GET upload: %d, want the Space's own answer", resp.StatusCode)
	}
}

func TestMaskBytes(t *testing.T) {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, n := range []int{0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 1000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		want := bytes.Clone(b)
		for i := range want {
			want[i] ^= mask[i&3]
		}
		maskBytes(b, mask)
		if !bytes.Equal(b, want) {
			t.Errorf("maskBytes of %d bytes = % x, want % x", n, b, want)
		}
	}
}
