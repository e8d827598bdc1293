package main

// End-to-end tests of uploads (issue 12, PROTOCOL.md section 9): files from
// the page streamed through the relay binary to the Space, on the demo
// Space and on both Gradio versions.
//
// "upload" runs on the shared relay (for the demo, its embedded Space).
// "upload limits" and "upload memory" run relays of their own in front of
// a Space in another process than the relay's: the real Gradio, or for the
// demo a demo Space served by this test binary. The limits relay reaches
// its Space through an uploadTap, a proxy that records every request to
// the Space's upload route, which is how the tests see that no byte went
// upstream.

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
)

// testUpload sends real PNGs in chunks and has /restyle transform them: the
// bytes arrive intact, a submit that names an upload still arriving joins
// once it is in, and a result file goes into the next job by reference.
func testUpload(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	c := e.visitor(t, ctx)
	lim := mustUploadLimits(t, c)
	// Noise does not compress: the file spans several chunks of the
	// default 256 KiB, more than the window, so the flow control is used.
	src, data := noisePNG(t, 640, 512, 12)
	if int64(len(data)) <= lim.Window*lim.Chunk {
		t.Fatalf("the PNG is %d bytes: too small to use the window of %d chunks of %d", len(data), lim.Window, lim.Chunk)
	}

	t.Run("restyle", func(t *testing.T) {
		u := mustStartUpload(t, c, "u1", "noise.png", "image/png", data)
		if end := u.mustFinish(t); end.Type != "uploaded" || end.Size != int64(len(data)) {
			t.Fatalf("upload u1 ended with %s, want uploaded with size %d", end, len(data))
		}
		if n := len(u.progress); n < 2 || u.progress[n-1] != int64(len(data)) {
			t.Errorf("upload_progress said %v over %d frames, want several, the last at the size, %d", u.progress, u.frames, len(data))
		}
		prompt := "restyle " + uuid.NewString()
		mustSubmit(t, c, "j1", "/restyle", map[string]any{"image": map[string]any{"upload": "u1"}, "prompt": prompt})
		checkRestyle(t, c, "j1", src, data, prompt)
	})

	t.Run("pipelined", func(t *testing.T) {
		src2, data2 := noisePNG(t, 600, 480, 13)
		prompt := "pipelined " + uuid.NewString()
		u := mustStartUpload(t, c, "u2", "noise2.png", "image/png", data2)
		// The submit goes before any byte: its job waits for the upload.
		mustSubmit(t, c, "j2", "/restyle", map[string]any{"image": map[string]any{"upload": "u2"}, "prompt": prompt})
		end := u.mustFinish(t)
		if end.Type != "uploaded" {
			t.Fatalf("upload u2 ended with %s, want uploaded", end)
		}
		for _, m := range u.seen { // every message read up to uploaded, in order
			if m.id() == "j2" {
				t.Errorf("job j2 got %s before its upload's uploaded; messages in order:\n%s", m, dump(u.seen))
			}
		}
		checkRestyle(t, c, "j2", src2, data2, prompt)
	})

	t.Run("result as input", func(t *testing.T) {
		prompt := "feed " + uuid.NewString()
		mustSubmit(t, c, "g1", "/generate", map[string]any{"prompt": prompt, "steps": 1, "width": 96, "height": 64})
		msgs, files := mustJob(t, c, "g1")
		res := msgs[len(msgs)-1]
		if res.Type != "result" {
			t.Fatalf("/generate ended with %s, want a result", res)
		}
		id, ok := fileRef(res.Data[0])
		if !ok {
			t.Fatalf("/generate's result %s has no file reference", res)
		}
		f := files[id]
		img := checkImage(t, f, prompt, 96, 64)
		prompt2 := "fed " + uuid.NewString()
		mustSubmit(t, c, "j3", "/restyle", map[string]any{"image": map[string]any{"file": id}, "prompt": prompt2})
		checkRestyle(t, c, "j3", img, f.bytes, prompt2)
	})

	t.Run("file inputs", func(t *testing.T) { testFileInputs(t, e) })
}

// testFileInputs sends files to a Gallery, a File of several files, an
// Audio and a Video as spacerelay.js does, each a bare {"upload":id} (or
// {"file":id}) wherever the input takes a file, and checks that the Space
// got each file's bytes intact, in the shape its Gradio wants: the relay
// puts a gallery's items in {"image"|"video": …} objects, and a Video in
// {"video": …} on Gradio 5.
func testFileInputs(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	c := e.visitor(t, ctx)
	_, dot := noisePNG(t, 24, 16, 14)
	_, big := noisePNG(t, 300, 200, 15)
	clip := bytes.Repeat([]byte("not really a video "), 1000)
	tone := bytes.Repeat([]byte("RIFF and then some "), 500)
	contents := map[string][]byte{"dot": dot, "big": big, "clip": clip, "tone": tone}
	for _, u := range []struct{ id, name, mime string }{
		{"dot", "dot.png", "image/png"}, {"big", "big.png", "image/png"},
		{"clip", "clip.mp4", "video/mp4"}, {"tone", "tone.wav", ""}, // a browser may not know a type
	} {
		if end := mustStartUpload(t, c, u.id, u.name, u.mime, contents[u.id]).mustFinish(t); end.Type != "uploaded" {
			t.Fatalf("upload %s ended with %s, want uploaded", u.id, end)
		}
	}
	ref := func(id string) map[string]any { return map[string]any{"upload": id} }
	mustSubmit(t, c, "gen", "/generate", map[string]any{"prompt": "into a gallery " + uuid.NewString(), "steps": 1, "width": 20, "height": 10})
	msgs, files := mustJob(t, c, "gen")
	out, ok := fileRef(msgs[len(msgs)-1].Data[0])
	if !ok {
		t.Fatalf("/generate's result %s has no file reference", msgs[len(msgs)-1])
	}
	contents["the result"] = files[out].bytes // fed back by its id, not sent again
	for _, tc := range []struct {
		endpoint string
		inputs   map[string]any
		want     []string // each file the Space got: its upload [kind [caption]]
	}{
		{"/gallery", map[string]any{"gallery": []any{ref("dot"), ref("clip"), map[string]any{"upload": "big", "caption": "a big one"}, map[string]any{"file": out}}},
			[]string{"dot image", "clip video", "big image a big one", "the result image"}},
		{"/files", map[string]any{"files": []any{ref("tone"), ref("clip"), ref("dot")}}, []string{"tone", "clip", "dot"}},
		{"/audio", map[string]any{"audio": ref("tone")}, []string{"tone"}},
		{"/video", map[string]any{"video": ref("clip")}, []string{"clip"}},
	} {
		id := "j" + tc.endpoint[1:]
		mustSubmit(t, c, id, tc.endpoint, tc.inputs)
		if got := checksumsOf(t, c, id, contents); !slices.Equal(got, tc.want) {
			t.Errorf("%s %v: the Space got %q, want %q", tc.endpoint, tc.inputs, got, tc.want)
		}
	}

	// A submit that names a file still arriving: it goes in its object once in.
	late := bytes.Repeat([]byte("a late video "), 30000)
	contents["late"] = late
	u := mustStartUpload(t, c, "late", "late.webm", "video/webm", late)
	mustSubmit(t, c, "jlate", "/video", map[string]any{"video": ref("late")})
	if end := u.mustFinish(t); end.Type != "uploaded" {
		t.Fatalf("upload late ended with %s, want uploaded", end)
	}
	if got := checksumsOf(t, c, "jlate", contents); !slices.Equal(got, []string{"late"}) {
		t.Errorf("/video of an upload still arriving: the Space got %q, want the late upload", got)
	}
}

// checksumsOf reads job id of a file endpoint to its result and names each
// file the Space reported (SPEC.md): by the key of contents its sha256
// is of, then its kind and caption, if it has them.
func checksumsOf(t *testing.T, c *wsClient, id string, contents map[string][]byte) []string {
	t.Helper()
	msgs, _ := mustJob(t, c, id)
	res := msgs[len(msgs)-1]
	var text string
	var report struct {
		Count int
		Files []struct {
			Kind, SHA256 string
			Caption      *string
		}
	}
	if res.Type != "result" || len(res.Data) != 1 || json.Unmarshal(res.Data[0], &text) != nil || json.Unmarshal([]byte(text), &report) != nil {
		t.Fatalf("job %s ended with %s, want a result with the Space's checksums\n%s", id, res, dump(msgs))
	}
	if report.Count != len(report.Files) {
		t.Errorf("job %s: the Space reports %d files and lists %d", id, report.Count, len(report.Files))
	}
	sums := map[string]string{}
	for name, b := range contents {
		sum := sha256.Sum256(b)
		sums[hex.EncodeToString(sum[:])] = name
	}
	var got []string
	for _, f := range report.Files {
		name := cmp.Or(sums[f.SHA256], "sha256 "+f.SHA256)
		if f.Kind != "" {
			name += " " + f.Kind
		}
		if f.Caption != nil {
			name += " " + *f.Caption
		}
		got = append(got, name)
	}
	return got
}

// checkRestyle reads /restyle job id to its result and checks it: the Space
// saw exactly data (the sha256 its info reports), and the image is src
// tinted half way towards the prompt's colour (SPEC.md, /restyle step 5).
func checkRestyle(t *testing.T, c *wsClient, id string, src image.Image, data []byte, prompt string) {
	t.Helper()
	msgs, files := mustJob(t, c, id)
	res := msgs[len(msgs)-1]
	if res.Type != "result" || len(res.Data) != 2 {
		t.Fatalf("job %s ended with %s, want a result with 2 outputs\n%s", id, res, dump(msgs))
	}
	var text string
	var info struct {
		SHA256        string
		Width, Height int
		Style         string
		Strength      float64
	}
	if err := json.Unmarshal(res.Data[1], &text); err != nil || json.Unmarshal([]byte(text), &info) != nil {
		t.Fatalf("job %s: info output %s, want a JSON text", id, res.Data[1])
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]); info.SHA256 != want {
		t.Errorf("job %s: the Space got bytes of sha256 %s, want %s (the %d bytes sent)", id, info.SHA256, want, len(data))
	}
	b := src.Bounds()
	if info.Width != b.Dx() || info.Height != b.Dy() || info.Style != "tint" || info.Strength != 50 {
		t.Errorf("job %s: info %s, want %dx%d, tint at 50", id, text, b.Dx(), b.Dy())
	}
	fid, ok := fileRef(res.Data[0])
	if !ok {
		t.Fatalf("job %s: result %s has no file reference", id, res)
	}
	out, err := decodePNG(files[fid])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(files[fid].bytes, data) {
		t.Errorf("job %s: the restyled image is the input itself", id)
	}
	if ob := out.Bounds(); ob.Dx() != b.Dx() || ob.Dy() != b.Dy() {
		t.Fatalf("job %s: restyled image %dx%d, want %dx%d", id, ob.Dx(), ob.Dy(), b.Dx(), b.Dy())
	}
	if x, y, got, want, ok := tinted(nrgba(src), out, prompt); !ok {
		t.Errorf("job %s: pixel (%d,%d) = %v, want %v: the input tinted half way to the prompt's colour", id, x, y, got, want)
	}
}

// tinted checks that out is in tinted half way towards the prompt's colour
// A, in SPEC.md's integers, and returns the first pixel that is not.
func tinted(in *image.NRGBA, out image.Image, prompt string) (x, y int, got, want [3]uint32, ok bool) {
	tint := sha256.Sum256([]byte(prompt))
	b := in.Bounds()
	for y := range b.Dy() {
		for x := range b.Dx() {
			p := in.Pix[in.PixOffset(b.Min.X+x, b.Min.Y+y):]
			for k := range 3 {
				want[k] = (uint32(p[k])*50 + uint32(tint[k])*50 + 50) / 100
			}
			if got = rgb(out, out.Bounds().Min.X+x, out.Bounds().Min.Y+y); got != want {
				return x, y, got, want, false
			}
		}
	}
	return 0, 0, got, want, true
}

// nrgba returns img as non-premultiplied RGBA, as the Space reads it.
func nrgba(img image.Image) *image.NRGBA {
	if n, ok := img.(*image.NRGBA); ok {
		return n
	}
	b := img.Bounds()
	n := image.NewNRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			n.Set(x, y, img.At(x, y))
		}
	}
	return n
}

// noisePNG returns an RGBA image of noise (with varying alpha, which a
// re-encoding would change) and its PNG encoding.
func noisePNG(t *testing.T, w, h int, seed uint64) (image.Image, []byte) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.Uint32())
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.NoCompression} // noise does not compress
	if err := enc.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return img, buf.Bytes()
}

// testUploadLimits checks the limits and cancel against what the Space saw
// through an uploadTap: an upload over --max-upload-bytes, or over the
// session's --max-session-upload-bytes, is refused before any byte goes
// upstream; a cancelled upload ends with cancelled, its upstream request
// is cut, and no job of it reaches the Space.
func testUploadLimits(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	space := e.spaceOutside(t, 0)
	tap := newUploadTap(t, space)
	r := startRelay(t, e.bin, tap.url, "--upload-chunk-bytes", "64KiB",
		"--max-upload-bytes", "1MiB", "--max-session-upload-bytes", "1536KiB")
	c := visit(t, ctx, r, newToken())
	lim := mustUploadLimits(t, c)
	if want := (uploadLimits{Max: 1 << 20, Session: 1536 << 10, Chunk: 64 << 10, Window: 4, Feature: true}); lim != want {
		t.Errorf("hello: limits and features %+v, want %+v (the flags, and the upload feature)", lim, want)
	}
	blob := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }

	checkRefused(t, c, "u1", 1<<20+1, "over --max-upload-bytes")
	if got := tap.requests(); len(got) != 0 {
		t.Fatalf("after a refused upload the Space saw %d upload requests (%+v), want none", len(got), got)
	}
	u := mustStartUpload(t, c, "u2", "one.bin", "application/octet-stream", blob(1<<20))
	if end := u.mustFinish(t); end.Type != "uploaded" {
		t.Fatalf("upload u2 of 1 MiB ended with %s, want uploaded", end)
	}
	checkRefused(t, c, "u3", 600<<10, "past --max-session-upload-bytes after 1 MiB")
	if got := tap.waitEnded(t, ctx, 1); !got[0].whole || got[0].status != http.StatusOK || got[0].bytes <= 1<<20 {
		t.Errorf("the Space saw %+v, want one upload request of 1 MiB and its form, whole, answered 200", got)
	}

	// Cancel mid-upload, with a job waiting for it.
	u = mustStartUpload(t, c, "u4", "cut.bin", "application/octet-stream", blob(400<<10))
	prompt := "cut upload " + uuid.NewString()
	mustSubmit(t, c, "j4", "/restyle", map[string]any{"image": map[string]any{"upload": "u4"}, "prompt": prompt})
	u.mustSendUntil(t, 128<<10)
	u.mustProgress(t) // the upstream request is under way
	if err := c.cancel("u4"); err != nil {
		t.Fatal(err)
	}
	u.mustSendUntil(t, 192<<10) // a frame already on its way: dropped silently
	if end := u.mustFinish(t); end.Type != "cancelled" {
		t.Errorf("cancelled upload u4 ended with %s, want cancelled", end)
	}
	mustError(t, c, "j4", "invalid_input")
	mustQuietErrors(t, c)
	got := tap.waitEnded(t, ctx, 2)
	if cut := got[1]; cut.whole || cut.status == http.StatusOK || cut.bytes >= 400<<10 {
		t.Errorf("the cancelled upload's request: %+v, want it cut short, never whole or answered 200", cut)
	}
	// A job submitted after it runs; the cancelled one never reached the
	// Space, and its 400 KiB no longer count against the session's total.
	mustSubmit(t, c, "g5", "/generate", map[string]any{"prompt": "after " + prompt, "steps": 1})
	mustResult(t, c, "g5")
	if got := mustJournal(t, ctx, space, prompt); len(got) != 0 {
		t.Errorf("journal of the job of the cancelled upload: %q, want nothing", journalEvents(got))
	}
	u = mustStartUpload(t, c, "u5", "rest.bin", "application/octet-stream", blob(500<<10))
	if end := u.mustFinish(t); end.Type != "uploaded" {
		t.Errorf("upload u5 of 500 KiB, within the session's total once the cancelled upload is given back: %s, want uploaded", end)
	}
}

// testUploadStalled checks the flow control with a Space that takes no byte
// for a while: a page that keeps within the window of four chunks past the
// last upload_progress, in frames of any size up to a chunk, waits for the
// Space and then finishes its upload. The window is the page's only duty
// (PROTOCOL.md section 9): frames of an eighth of a chunk are as good as
// whole chunks.
func testUploadStalled(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	tap := newUploadTap(t, e.spaceOutside(t, 0))
	r := startRelay(t, e.bin, tap.url, "--upload-chunk-bytes", "64KiB")
	// More than the sockets between the relay and the Space hold, so that
	// the relay's upstream request stops taking bytes while it waits.
	data := bytes.Repeat([]byte("stalled "), 1<<20)
	for _, frame := range []int64{64 << 10, 8 << 10} {
		t.Run(strconv.FormatInt(frame>>10, 10)+" KiB frames", func(t *testing.T) {
			c := visit(t, ctx, r, newToken())
			u := mustStartUpload(t, c, "u1", "stalled.bin", "application/octet-stream", data)
			u.frame = frame
			release := tap.stall()
			defer release()
			filled := false
			u.onFull = func() { filled = true; release() } // the Space takes the bytes once the page has to wait
			u.mustSendUntil(t, int64(len(data)))
			if !filled && u.end == nil {
				t.Fatalf("the sockets took all %d MiB while the Space read nothing: the test needs a larger file", len(data)>>20)
			}
			if end := u.mustFinish(t); end.Type != "uploaded" {
				t.Errorf("an upload of %d KiB frames within the window, to a Space that took no byte until the window was full, ended with %s, want uploaded", frame>>10, end)
			}
		})
	}
}

// checkRefused announces an upload of size bytes and checks that it is
// refused with file_too_large.
func checkRefused(t *testing.T, c *wsClient, id string, size int64, why string) {
	t.Helper()
	if err := c.send(map[string]any{"type": "upload", "id": id, "name": "big.bin", "mime": "application/octet-stream", "size": size}); err != nil {
		t.Fatal(err)
	}
	m, err := c.expect(func(m relayMsg) bool { return m.id() == id })
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != "error" || m.Code != "file_too_large" || m.Message == "" {
		t.Errorf("upload %s of %d bytes (%s): %s, want a file_too_large error", id, size, why, m)
	}
}

// mustQuietErrors pings and checks that no error came before the pong.
func mustQuietErrors(t *testing.T, c *wsClient) {
	t.Helper()
	if err := c.send(map[string]string{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	for {
		m := mustNext(t, c)
		if m.Type == "pong" {
			return
		}
		if m.Type == "error" {
			t.Errorf("an error after the upload ended: %s", m)
		}
	}
}

// testUploadMemory uploads 40 MiB through a relay of its own and checks
// that the relay does not hold the file: over the upload its resident
// memory (VmRSS at the end, and its peak, VmHWM) grows by a fifth of the
// file at most, where holding it would take all of it (and the race
// detector's shadow of it besides).
//
// The baseline is read after a first upload of 8 MiB, which sets up what
// every upload reuses (the upstream connection, the socket's and the HTTP
// client's buffers) and brings the Go heap to the size a stream of chunks
// keeps it at. A race-built relay's memory is not the figure of the issue
// ("a few MiB"): spacerelay-load --mode upload reports that one, on a
// relay built without the race detector.
//
// The memory does not depend on the upstream's kind, and a 40 MiB upload
// through a race-built relay takes seconds: the test runs on the demo
// Space and on one Gradio, the newest.
func testUploadMemory(t *testing.T, e *upstreamEnv) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the relay's memory from /proc/PID/status: Linux only")
	}
	const size, warm = 40 << 20, 8 << 20
	const bound = size / 5
	ctx := testCtx(t)
	r := startRelay(t, e.bin, e.spaceOutside(t, 64<<20), "--max-upload-bytes", "64MiB", "--max-session-upload-bytes", "128MiB")
	c := visit(t, ctx, r, newToken())
	pid := r.cmd.Process.Pid
	idle := mustProcStatus(t, pid, "VmRSS")
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{40}).Read(data)
	if end := mustStartUpload(t, c, "warm", "warm.bin", "application/octet-stream", data[:warm]).mustFinish(t); end.Type != "uploaded" {
		t.Fatalf("the 8 MiB upload ended with %s, want uploaded", end)
	}
	reset := resetPeak(pid) == nil // else only the samples taken while uploading
	before := mustProcStatus(t, pid, "VmRSS")
	peak := before
	u := mustStartUpload(t, c, "big", "big.bin", "application/octet-stream", data)
	u.onProgress = func() { peak = max(peak, mustProcStatus(t, pid, "VmRSS")) }
	start := time.Now()
	if end := u.mustFinish(t); end.Type != "uploaded" || end.Size != size {
		t.Fatalf("the 40 MiB upload ended with %s, want uploaded", end)
	}
	took := time.Since(start)
	after := mustProcStatus(t, pid, "VmRSS")
	if reset {
		peak = max(peak, mustProcStatus(t, pid, "VmHWM"))
	}
	t.Logf("40 MiB in %v (%.0f MiB/s); relay VmRSS %.1f MiB idle, %.1f MiB after 8 MiB, then %.1f MiB at the peak of 40 MiB (VmHWM reset: %v) and %.1f MiB after",
		took.Round(time.Millisecond), size/(1<<20)/took.Seconds(), mib(idle), mib(before), mib(peak), reset, mib(after))
	if peak-before > bound || after-before > bound {
		t.Errorf("over a 40 MiB upload the relay's memory grew by %.1f MiB at its peak and %.1f MiB at the end (from %.1f MiB after an upload of 8 MiB), want under %.0f MiB: it must not hold the file",
			mib(peak-before), mib(after-before), mib(before), mib(bound))
	}
}
