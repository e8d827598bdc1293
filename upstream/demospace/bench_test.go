package demospace

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

func BenchmarkRender128(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		render("a red fox", 128, 128, 128)
	}
}

func BenchmarkDraw128(b *testing.B) {
	img := render("a red fox", 128, 128, 128)
	p := newPalette("a red fox")
	b.ReportAllocs()
	for b.Loop() {
		draw(img, p, 128)
	}
}

func BenchmarkRenderPNG128(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		renderPNG("a red fox", 128, 128, 128)
	}
}

// BenchmarkJobRoundTrip is one /generate job of two (1µs) steps: join,
// then the session's stream from estimation to close_stream, over TCP.
func BenchmarkJobRoundTrip(b *testing.B) {
	sp := New(Config{StepDelay: time.Microsecond, QuotaSeconds: 1 << 30})
	srv := httptest.NewServer(sp)
	defer func() {
		srv.CloseClientConnections()
		sp.Close()
		srv.Close()
	}()
	c := srv.Client()
	i := 0
	for b.Loop() {
		i++
		if err := roundTrip(c, srv.URL, fmt.Sprint("bench-", i)); err != nil {
			b.Fatal(err)
		}
	}
}
