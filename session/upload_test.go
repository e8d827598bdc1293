package session_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

const chunk = 512 // the tests' upload_chunk_bytes

func uploadConfig() session.Config {
	return session.Config{UploadChunkBytes: chunk, MaxUploadBytes: 8 << 10, MaxSessionUploadBytes: 12 << 10}
}

func (h *harness) sendBinary(b []byte) {
	h.t.Helper()
	if err := h.browser.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		h.t.Fatalf("send %d bytes: %v", len(b), err)
	}
}

// upload sends an upload message and its bytes in chunks, as a page
// does: never more than the relay's window (4 chunks) past the last
// upload_progress. What it reads meanwhile stays for recv.
func (h *harness) upload(id string, data []byte) {
	h.t.Helper()
	h.uploadAs(id, "cat.png", "image/png", data)
}

// uploadAs is upload of a file of that name and media type.
func (h *harness) uploadAs(id, name, mime string, data []byte) {
	h.t.Helper()
	h.send(fmt.Sprintf(`{"type":"upload","id":%q,"name":%q,"mime":%q,"size":%d}`, id, name, mime, len(data)))
	h.sendData(id, data)
}

// sendData sends an announced upload's bytes, as upload does.
func (h *harness) sendData(id string, data []byte) {
	h.t.Helper()
	sent, received := 0, 0
	for sent < len(data) {
		n := min(chunk, len(data)-sent)
		for sent+n-received > 4*chunk {
			m := h.recvNew()
			if m["type"] == "upload_progress" && m["id"] == id {
				received = int(m["received"].(float64))
			}
			h.pending = append(h.pending, m)
		}
		h.sendBinary(data[sent : sent+n])
		sent += n
	}
}

// until reads messages up to one of type typ, and returns them all.
func (h *harness) until(typ string) []map[string]any {
	h.t.Helper()
	var got []map[string]any
	for {
		m := h.recv()
		got = append(got, m)
		if m["type"] == typ {
			return got
		}
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// Issue 12: an upload's bytes reach the upstream intact, in chunks, with
// upload_progress about once a chunk and uploaded at the end.
func TestUploadArrivesIntact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		data := pattern(5*chunk + 100)
		h.upload("u1", data)
		msgs := h.until("uploaded")
		progress := 0
		for _, m := range msgs[:len(msgs)-1] {
			if m["type"] != "upload_progress" || m["id"] != "u1" || m["size"] != float64(len(data)) {
				t.Fatalf("message %v, want upload_progress of u1", m)
			}
			progress++
		}
		if last := msgs[len(msgs)-2]; last["received"] != float64(len(data)) {
			t.Errorf("last upload_progress = %v, want all %d bytes", last, len(data))
		}
		if progress < 5 || progress > 7 {
			t.Errorf("%d upload_progress messages for 6 chunks, want about one a chunk", progress)
		}
		if m := msgs[len(msgs)-1]; m["id"] != "u1" || m["size"] != float64(len(data)) {
			t.Errorf("uploaded = %v", m)
		}
		if _, _, got := up.snapshot(); len(got) != 1 || !bytes.Equal(got[0], data) {
			t.Errorf("the upstream got %d uploads, want the bytes intact", len(got))
		}
	})
}

// Issue 12: a submit may name an upload still arriving: its job joins
// once the upload is in, with the Space's FileData (and its meta) in
// place of the reference.
func TestSubmitWaitsForItsUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: script(false, &upstream.Completed{Data: []any{nil, "done"}})}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		data := pattern(3 * chunk)
		h.send(fmt.Sprintf(`{"type":"upload","id":"u1","name":"cat.png","mime":"image/png","size":%d}`, len(data)))
		h.sendBinary(data[:chunk])
		h.send(`{"type":"submit","id":"j1","inputs":{"prompt":"restyle","image":{"upload":"u1"}}}`)
		h.sendBinary(data[chunk : 2*chunk])
		time.Sleep(time.Second)
		if calls, _, _ := up.snapshot(); len(calls) != 0 {
			t.Fatalf("the job joined before its upload was in")
		}
		h.sendBinary(data[2*chunk:])
		msgs := h.until("result")
		var types []string
		for _, m := range msgs {
			types = append(types, fmt.Sprint(m["type"]))
		}
		joined := strings.Join(types, " ")
		if !strings.Contains(joined, "uploaded accepted") {
			t.Errorf("messages %s, want uploaded before accepted", joined)
		}
		calls, _, _ := up.snapshot()
		img, _ := calls[0].Inputs["image"].(map[string]any)
		meta, _ := img["meta"].(map[string]any)
		if img["path"] != "/tmp/upload/1/cat.png" || meta["_type"] != "gradio.FileData" {
			t.Errorf("the job's image input = %v, want the upload's FileData", calls[0].Inputs["image"])
		}
	})
}

// Issue 12: the limits refuse before any byte goes upstream, and frames
// that break the rules end their upload with bad_request.
func TestUploadLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		check := func(what, id, code string) {
			t.Helper()
			m := h.expect("error")[0]
			if m["code"] != code || fmt.Sprint(m["id"]) != id {
				t.Errorf("%s: %v, want %s with id %q", what, m, code, id)
			}
		}
		h.send(`{"type":"upload","id":"big","name":"a","size":9000}`)
		for range 4 { // the refused upload's frames already on their way: no error
			h.sendBinary(make([]byte, chunk))
		}
		check("over max_upload_bytes", "big", "file_too_large")
		h.send(`{"type":"ping"}`)
		h.expect("pong")
		h.sendBinary([]byte("stray")) // past the window
		check("a frame with no upload", "<nil>", "bad_request")
		h.send(fmt.Sprintf(`{"type":"upload","id":"wide","name":"a","size":%d}`, 2*chunk))
		h.sendBinary(make([]byte, chunk+1))
		check("a frame over the chunk limit", "wide", "bad_request")
		h.send(`{"type":"upload","id":"long","name":"a","size":10}`)
		h.sendBinary(make([]byte, 11))
		check("more than its size", "long", "bad_request")
		for i := range 2 {
			h.upload(fmt.Sprintf("ok%d", i), make([]byte, 5000))
			h.until("uploaded")
		}
		h.send(`{"type":"upload","id":"third","name":"a","size":5000}`)
		check("over max_session_upload_bytes", "third", "file_too_large")
		if _, _, got := up.snapshot(); len(got) != 2 {
			t.Errorf("%d uploads reached the upstream, want the two good ones", len(got))
		}
	})
}

// Issue 12: cancel stops an upload and its request; the frames already on
// their way are no error, and a job that waited for it ends.
func TestCancelMidUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: script(false)}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		data := pattern(4 * chunk)
		h.send(fmt.Sprintf(`{"type":"upload","id":"u1","name":"cat.png","size":%d}`, len(data)))
		h.sendBinary(data[:chunk])
		h.send(`{"type":"submit","id":"j1","data":[{"upload":"u1"}]}`)
		h.send(`{"type":"cancel","id":"u1"}`)
		h.sendBinary(data[chunk : 2*chunk]) // already on its way
		got := map[string]string{}
		for len(got) < 2 {
			if m := h.recv(); m["type"] != "upload_progress" {
				got[fmt.Sprint(m["id"])] = fmt.Sprint(m["type"], " ", m["code"])
			}
		}
		if got["u1"] != "cancelled <nil>" || got["j1"] != "error invalid_input" {
			t.Errorf("got %v, want u1 cancelled and j1 failed", got)
		}
		h.send(`{"type":"ping"}`)
		h.expect("pong") // no error for the stray frame came before
		if calls, _, uploaded := up.snapshot(); len(calls)+len(uploaded) != 0 {
			t.Errorf("the upstream got %d jobs and %d uploads", len(calls), len(uploaded))
		}
	})
}

// Issue 12: while the upstream takes an upload slowly, pings are answered
// and the session's other jobs go on, for a page that keeps within the
// window past the last upload_progress.
func TestSlowUploadBlocksNothingElse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		up := &fakeUpstream{uploadGate: gate, script: script(false, &upstream.Completed{Data: []any{nil, "other"}})}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		h.send(fmt.Sprintf(`{"type":"upload","id":"u1","name":"a","size":%d}`, 8*chunk))
		for range 4 { // the window: 4 chunks past what went upstream
			h.sendBinary(make([]byte, chunk))
		}
		h.send(`{"type":"ping"}`)
		h.expect("pong")
		h.send(`{"type":"submit","id":"j","data":["x"]}`)
		h.expect("accepted", "result")
		close(gate)
	})
}

// PROTOCOL.md section 9: a page that sends past the window, not pacing
// itself by upload_progress, is not refused. Its frame waits for the Space
// to take a chunk, the relay reads nothing more of it meanwhile (so it
// holds no more than the window) but goes on with the session's jobs, and
// the file arrives whole.
func TestUploadPastTheWindowWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		up := &fakeUpstream{uploadGate: gate, script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
			time.Sleep(time.Second) // a job that ends while the upload waits
			return emit(&upstream.Completed{Data: []any{nil, "done"}})
		}}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		h.send(`{"type":"submit","id":"j","data":["x"]}`)
		h.expect("accepted")
		data := pattern(8 * chunk)
		sent := make(chan error, 1)
		go func() { // a page that streams its frames as fast as it can
			ctx := context.Background()
			err := h.browser.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"upload","id":"u1","name":"a","size":%d}`, len(data)))
			for i := 0; err == nil && i < 8; i++ {
				err = h.browser.Write(ctx, websocket.MessageBinary, data[i*chunk:(i+1)*chunk])
			}
			if err == nil {
				err = h.browser.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
			}
			sent <- err
		}()
		synctest.Wait()
		if n := len(h.inbox); n != 0 {
			t.Fatalf("%d messages came while the Space took nothing, want none (no error, no pong yet): %v", n, h.recv())
		}
		time.Sleep(2 * time.Second)
		if m := h.recv(); m["type"] != "result" || m["id"] != "j" {
			t.Fatalf("while the upload waits: %v, want the other job's result", m)
		}
		gate <- struct{}{} // the Space takes a chunk: the relay reads on
		synctest.Wait()
		if m := h.recv(); m["type"] != "upload_progress" || m["received"] != float64(chunk) {
			t.Errorf("after the Space took a chunk: %v, want its upload_progress", m)
		}
		if n := len(h.inbox); n != 0 {
			t.Errorf("%d more messages, want none: the ping is still behind the frames", n)
		}
		close(gate)
		seen := map[string]bool{}
		for !seen["uploaded"] || !seen["pong"] {
			m := h.recv()
			if m["type"] == "error" {
				t.Fatalf("error: %v", m)
			}
			seen[m["type"].(string)] = true
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		if _, _, files := up.snapshot(); len(files) != 1 || !bytes.Equal(files[0], data) {
			t.Errorf("the Space got %d files, want the one, whole", len(files))
		}
	})
}

// A ping the browser cannot answer because its pong waits behind an
// upload's frames, which the relay takes at the Space's pace, is no ping
// timeout: the relay itself stopped reading. (A browser's pong queues
// behind what it has buffered, and the relay reads no pong during a hold;
// deafPings stands for that.)
func TestPingBehindASlowUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		up := &fakeUpstream{uploadGate: gate}
		cfg := uploadConfig()
		cfg.PingInterval = 5 * time.Second
		cfg.MaxUploadBytes, cfg.MaxSessionUploadBytes = 40*chunk, 40*chunk
		h := startWith(t, up, cfg, func(c session.Conn) session.Conn { return deafPings{c} })
		h.readAhead()
		h.expect("hello")
		done := make(chan struct{})
		var space sync.WaitGroup
		defer space.Wait()
		defer close(done)
		space.Go(func() { // the Space takes a chunk every 700 ms
			for {
				time.Sleep(700 * time.Millisecond)
				select {
				case gate <- struct{}{}:
				case <-done:
					return
				}
			}
		})
		data := pattern(40 * chunk)
		start := time.Now()
		go streamUpload(h, "u1", data) // as fast as it can: the relay holds it back
		for _, m := range h.until("uploaded") {
			if m["type"] == "error" {
				t.Errorf("error: %v", m)
			}
		}
		if d := time.Since(start); d < 25*time.Second {
			t.Errorf("the upload took %v, want the Space's pace (over 25 s, five ping intervals)", d)
		}
		if _, _, files := up.snapshot(); len(files) != 1 || !bytes.Equal(files[0], data) {
			t.Errorf("the Space got %d files, want the one, whole", len(files))
		}
	})
}

// A hold the Space does not move (it stopped taking the file) ends the
// upload after holdStall, not the session: the relay reads the socket
// again, the page's frames already sent pass, and its ping is answered.
// So it does while pings tick and while another job keeps Run busy, each
// of which wakes Run during the hold.
func TestStalledUploadEndsTheHold(t *testing.T) {
	busy := func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
		for {
			time.Sleep(2 * time.Second)
			if err := emit(progress(1)); err != nil {
				return err
			}
		}
	}
	for _, tc := range []struct {
		name  string
		pings time.Duration
		job   bool
	}{{"pings off", -1, false}, {"pings on", 30 * time.Second, false}, {"a busy job", -1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := &fakeUpstream{uploadGate: make(chan struct{}), script: busy} // takes nothing
				cfg := uploadConfig()
				cfg.PingInterval = tc.pings
				// deafPings: a ping would otherwise wait on the page's blocked writer.
				h := startWith(t, up, cfg, func(c session.Conn) session.Conn { return deafPings{c} })
				h.readAhead()
				h.expect("hello")
				if tc.job {
					h.send(`{"type":"submit","id":"j","data":["x"]}`)
					h.expect("accepted")
				}
				start := time.Now()
				go func() {
					streamUpload(h, "u1", pattern(8*chunk))
					h.browser.Write(context.Background(), websocket.MessageText, []byte(`{"type":"ping"}`))
				}()
				var end map[string]any
				for end == nil {
					if m := h.recv(); m["type"] == "error" {
						end = m
					}
				}
				if end["id"] != "u1" || end["code"] != "upstream_unavailable" {
					t.Errorf("the stalled upload: %v, want upstream_unavailable for u1", end)
				}
				if d := time.Since(start); d < 10*time.Second || d > 11*time.Second {
					t.Errorf("it ended after %v, want holdStall (10 s)", d)
				}
				for m := h.recv(); m["type"] != "pong"; m = h.recv() {
					if m["type"] == "error" {
						t.Errorf("after: %v", m)
					}
				}
			})
		})
	}
}

// A browser that leaves while its frame is held, the Space taking
// nothing, is seen leaving once the hold ends, within holdStall.
func TestBrowserGoneWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{uploadGate: make(chan struct{})}
		h := startWith(t, up, uploadConfig(), func(c session.Conn) session.Conn { return deafPings{c} })
		h.readAhead()
		h.expect("hello")
		go streamUpload(h, "u1", pattern(8*chunk))
		time.Sleep(time.Second)
		start := time.Now()
		h.browser.CloseNow()
		err := <-h.ended
		h.ended <- err
		if d := time.Since(start); d > 10*time.Second || !errors.Is(err, session.ErrClientGone) {
			t.Errorf("Run() = %v after %v, want ErrClientGone within holdStall", err, d)
		}
	})
}

// A held frame counts in the relay's budget, as the window's chunks do:
// with no room for it, the upload ends with over_capacity at once.
func TestHeldFrameCountsInTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := uploadConfig()
		cfg.PingInterval = -1
		cfg.Budget = session.NewBudget(4 * chunk) // the window, and no more
		h := start(t, &fakeUpstream{uploadGate: make(chan struct{})}, cfg)
		h.readAhead()
		h.expect("hello")
		start := time.Now()
		go streamUpload(h, "u1", pattern(8*chunk))
		m := h.until("error")
		if e := m[len(m)-1]; e["id"] != "u1" || e["code"] != "over_capacity" || time.Since(start) > 0 {
			t.Errorf("the frame past the window: %v after %v, want over_capacity at once", e, time.Since(start))
		}
	})
}

// A stall check that fires while Run is busy, just after the Space took a
// chunk, is stale: the upload goes on. (Run then has both the Space's
// progress and the check to take; either may come first, so the test runs
// the race several times.)
func TestStaleStallCheck(t *testing.T) {
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gate, began := make(chan struct{}), make(chan struct{})
				var space sync.WaitGroup
				defer space.Wait()
				up := &fakeUpstream{uploadGate: gate, script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
					<-began // the hold begins: its check fires holdStall later
					time.Sleep(holdStall - 10*time.Millisecond)
					space.Go(func() { // the Space moves during the write below, before the check fires
						time.Sleep(5 * time.Millisecond)
						gate <- struct{}{}
						time.Sleep(time.Second)
						close(gate)
					})
					return emit(&upstream.Completed{Data: []any{nil, "done"}}) // a write of 20 ms
				}}
				cfg := uploadConfig()
				cfg.PingInterval = -1
				h := startWith(t, up, cfg, func(c session.Conn) session.Conn { return slowWrites{c} })
				h.readAhead()
				h.expect("hello")
				h.send(`{"type":"submit","id":"j","data":["x"]}`)
				h.expect("accepted")
				close(began)
				go streamUpload(h, "u1", pattern(8*chunk))
				for m := h.recv(); m["type"] != "uploaded"; m = h.recv() {
					if m["type"] == "error" {
						t.Fatalf("the upload failed though the Space moved before its stall check: %v", m)
					}
				}
			})
		})
	}
}

// holdStall is how long a hold the Space does not move lasts.
const holdStall = session.HoldStall

// slowWrites takes 20 ms for each write to the browser.
type slowWrites struct{ session.Conn }

func (c slowWrites) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	time.Sleep(20 * time.Millisecond)
	return c.Conn.Write(ctx, typ, p)
}

// streamUpload sends an upload and all its frames without waiting for
// upload_progress, as a page that ignores the window does.
func streamUpload(h *harness, id string, data []byte) {
	ctx := context.Background()
	err := h.browser.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"upload","id":%q,"name":"a","size":%d}`, id, len(data)))
	for i := 0; err == nil && i < len(data); i += chunk {
		err = h.browser.Write(ctx, websocket.MessageBinary, data[i:min(i+chunk, len(data))])
	}
}

// deafPings is a socket on which no pong comes back.
type deafPings struct{ session.Conn }

func (deafPings) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// Issue 12: a file the relay sent may be fed into the next job by its id:
// the job gets the Space's FileData, no bytes travel back.
func TestFileReferenceAsInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{files: map[string][]byte{"/tmp/out.png": []byte("png")},
			script: script(false, &upstream.Completed{Data: []any{file("/tmp/out.png"), "x"}})}
		h := start(t, up, session.Config{})
		h.readAhead()
		h.expect("hello")
		h.send(`{"type":"submit","id":"a","data":["x"]}`)
		f := h.expect("accepted", "file", "binary", "result")[1]
		h.send(fmt.Sprintf(`{"type":"submit","id":"b","data":["again",{"file":%q}]}`, f["file"]))
		h.expect("accepted")
		calls, _, _ := up.snapshot()
		in, _ := calls[1].Data[1].(map[string]any)
		if in["path"] != "/tmp/out.png" || in["meta"].(map[string]any)["_type"] != "gradio.FileData" {
			t.Errorf("the second job's input = %v, want the file's FileData", calls[1].Data[1])
		}
		h.send(`{"type":"submit","id":"c","data":["x",{"file":"f99"}]}`)
		if m := h.until("error"); m[len(m)-1]["code"] != "invalid_input" {
			t.Errorf("an unknown file: %v, want invalid_input", m[len(m)-1])
		}
	})
}

// Issue 9: the relay-wide budget bounds the file bytes all sessions hold:
// a file that finds no room waits, and past the wait fails with
// over_capacity; one larger than the whole budget fails at once.
func TestFileBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := session.NewBudget(1000)
		up := &fakeUpstream{files: map[string][]byte{"/a": make([]byte, 700), "/b": make([]byte, 700), "/huge": make([]byte, 2000)},
			script: func(ctx context.Context, call upstream.Call, emit func(upstream.Event) error) error {
				return emit(&upstream.Completed{Data: []any{file(call.Data[0].(string)), ""}})
			}}
		cfg := session.Config{Budget: budget, WriteTimeout: time.Hour, PingInterval: -1}
		slow, quick := start(t, up, cfg), start(t, up, cfg)
		quick.readAhead()
		slow.expect("hello")
		quick.expect("hello")
		quick.send(`{"type":"submit","id":"huge","data":["/huge"]}`)
		if m := quick.until("error"); m[len(m)-1]["code"] != "over_capacity" {
			t.Errorf("a file over the whole budget: %v", m[len(m)-1])
		}
		slow.send(`{"type":"submit","id":"a","data":["/a"]}`) // and reads nothing: a's file stays in memory
		time.Sleep(time.Second)
		begin := time.Now()
		quick.send(`{"type":"submit","id":"b","data":["/b"]}`)
		if m := quick.until("error"); m[len(m)-1]["code"] != "over_capacity" || time.Since(begin) < 30*time.Second {
			t.Errorf("b, with no room: %v after %v, want over_capacity after waiting 30s", m[len(m)-1], time.Since(begin))
		}
		if m := slow.until("result"); m[len(m)-1]["id"] != "a" {
			t.Errorf("a: %v", m)
		}
		quick.send(`{"type":"submit","id":"b2","data":["/b"]}`) // room again
		if m := quick.until("result"); m[len(m)-1]["id"] != "b2" {
			t.Errorf("b2: %v", m)
		}
	})
}

// An empty file is all in at its announcement: an empty frame after it
// belongs to no upload, and ends nothing twice.
func TestEmptyUploadThenAnEmptyFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{}) // the upstream takes its time
		up := &fakeUpstream{uploadGate: gate}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		h.send(`{"type":"upload","id":"u0","name":"empty.txt","size":0}`)
		h.sendBinary([]byte{})
		h.send(`{"type":"ping"}`)
		h.expect("pong") // (a second close of its chunks would have panicked)
		close(gate)
		h.until("uploaded")
	})
}

// A session that ends mid-upload gives back the relay-wide budget its
// chunks held: the next visitor can use all of it.
func TestTeardownGivesTheUploadBudgetBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := uploadConfig()
		cfg.Budget = session.NewBudget(4 * chunk)
		gate := make(chan struct{}) // the upstream takes nothing
		h := start(t, &fakeUpstream{uploadGate: gate}, cfg)
		h.readAhead()
		h.expect("hello")
		h.send(fmt.Sprintf(`{"type":"upload","id":"u1","name":"a","size":%d}`, 8*chunk))
		for range 3 {
			h.sendBinary(make([]byte, chunk))
		}
		h.send(`{"type":"ping"}`)
		h.expect("pong") // its chunks are in
		h.cancel()       // the relay shuts down
		<-h.ended
		h.ended <- nil
		wantWholeBudget(t, cfg)
	})
}

// A submit that names an upload already cancelled ends at once, with the
// upload's problem.
func TestSubmitNamingACancelledUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: script(false)}
		h := start(t, up, uploadConfig())
		h.readAhead()
		h.expect("hello")
		h.send(fmt.Sprintf(`{"type":"upload","id":"u1","name":"a","size":%d}`, 4*chunk))
		h.sendBinary(make([]byte, chunk))
		h.send(`{"type":"cancel","id":"u1"}`)
		h.until("cancelled")
		h.send(`{"type":"submit","id":"j1","data":[{"upload":"u1"}]}`)
		if m := h.expect("error")[0]; m["id"] != "j1" || m["code"] != "invalid_input" {
			t.Errorf("j1: %v, want invalid_input at once", m)
		}
	})
}

// A cancelled upload lets the next one start at once, as spacerelay.js
// does right after its cancel.
func TestNextUploadRightAfterACancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, uploadConfig())
		h.readAhead()
		h.expect("hello")
		h.send(fmt.Sprintf(`{"type":"upload","id":"u1","name":"a","size":%d}`, 4*chunk))
		h.sendBinary(make([]byte, chunk))
		h.send(`{"type":"cancel","id":"u1"}`)
		h.upload("u2", pattern(chunk))
		for {
			m := h.recv()
			if m["id"] != "u2" {
				continue
			}
			if m["type"] == "error" {
				t.Fatalf("u2 refused after u1's cancel: %v", m)
			}
			if m["type"] == "uploaded" {
				if m["size"] != float64(chunk) {
					t.Errorf("u2 uploaded %v, want %d bytes", m["size"], chunk)
				}
				return
			}
		}
	})
}

// An upstream that answers before it has the whole file (and whose HTTP
// client reads the body on after the answer) fails the upload at once;
// the body's later reads take nothing from a buffer given back, and the
// budget comes back whole.
func TestUploadAnsweredEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := uploadConfig()
		cfg.Budget = session.NewBudget(4 * chunk)
		h := start(t, &fakeUpstream{answerEarly: true}, cfg)
		h.readAhead()
		h.expect("hello")
		h.upload("u1", pattern(4*chunk))
		if m := h.until("error"); m[len(m)-1]["id"] != "u1" || m[len(m)-1]["code"] != "file_too_large" {
			t.Errorf("u1: %v, want the Space's refusal", m[len(m)-1])
		}
		synctest.Wait()
		wantWholeBudget(t, cfg)
	})
}

// A job that holds room for one file does not wait for room for its
// next: it fails at once, so that two jobs never wait on each other.
func TestFileBudgetNoHoldAndWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := session.NewBudget(1000)
		up := &fakeUpstream{files: map[string][]byte{"/a": make([]byte, 700), "/s": make([]byte, 100), "/b": make([]byte, 700)},
			script: func(ctx context.Context, call upstream.Call, emit func(upstream.Event) error) error {
				if call.Data[0] == "two" {
					return emit(&upstream.Completed{Data: []any{file("/s"), file("/b")}})
				}
				return emit(&upstream.Completed{Data: []any{file("/a"), ""}})
			}}
		cfg := session.Config{Budget: budget, WriteTimeout: time.Hour, PingInterval: -1}
		slow, quick := start(t, up, cfg), start(t, up, cfg)
		quick.readAhead()
		slow.expect("hello")
		quick.expect("hello")
		slow.send(`{"type":"submit","id":"a","data":["one"]}`) // and reads nothing: /a stays in memory
		time.Sleep(time.Second)
		begin := time.Now()
		quick.send(`{"type":"submit","id":"j","data":["two"]}`)
		if m := quick.until("error"); m[len(m)-1]["code"] != "over_capacity" || time.Since(begin) != 0 {
			t.Errorf("j: %v after %v, want over_capacity at once", m[len(m)-1], time.Since(begin))
		}
		slow.until("result")
	})
}

// The Space's own upload limit (its /config's max_file_size), when lower
// than the relay's, is the one hello says and the one checked: a file over
// it is refused before any byte goes upstream.
func TestSpacesOwnUploadLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api := *testAPI
		api.MaxFileSize = 1000
		cfg := uploadConfig()
		cfg.API = &api
		up := &fakeUpstream{}
		h := start(t, up, cfg)
		h.readAhead()
		if lim := h.expect("hello")[0]["limits"].(map[string]any); lim["max_upload_bytes"] != 1000.0 {
			t.Errorf("hello's max_upload_bytes = %v, want the Space's 1000", lim["max_upload_bytes"])
		}
		h.send(`{"type":"upload","id":"u1","name":"a","size":1001}`)
		if m := h.expect("error")[0]; m["id"] != "u1" || m["code"] != "file_too_large" {
			t.Errorf("a file over the Space's limit: %v, want file_too_large", m)
		}
		if _, _, got := up.snapshot(); len(got) != 0 {
			t.Errorf("%d uploads reached the upstream", len(got))
		}
	})
}

// wantWholeBudget checks that cfg.Budget (of 4 chunks) is whole again: a
// new session's upload holds all of it at once, an upstream taking nothing
// meanwhile, with no over_capacity.
func wantWholeBudget(t *testing.T, cfg session.Config) {
	t.Helper()
	gate := make(chan struct{})
	next := start(t, &fakeUpstream{uploadGate: gate}, cfg)
	next.readAhead()
	next.expect("hello")
	next.send(fmt.Sprintf(`{"type":"upload","id":"u1","name":"a","size":%d}`, 4*chunk))
	for range 4 {
		next.sendBinary(make([]byte, chunk))
	}
	next.send(`{"type":"ping"}`)
	if m := next.recv(); m["type"] != "pong" {
		t.Fatalf("an upload of the whole budget after: %v", m)
	}
	close(gate)
	next.until("uploaded")
}
