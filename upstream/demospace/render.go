package demospace

import (
	"bytes"
	"crypto/sha256"
	"image"
	"image/png"
	"math"
	"sync"
)

// palette holds the 64 colours an image of prompt can have: pixel (x, y)
// has colour palette[(a*x + b*y) % 64] (SPEC.md, "The image").
type palette struct {
	rgb  [64][3]uint8
	a, b int
}

func newPalette(prompt string) palette {
	h := sha256.Sum256([]byte(prompt))
	p := palette{a: int(h[6]%7) + 1, b: int(h[7]%7) + 1}
	for m := range p.rgb {
		t := float64(m) / 63.0
		for c := range 3 {
			// The same float expression as numpy's A*(1-t) + B*t; the
			// exact value is never halfway between integers.
			v := float64(h[c])*(1-t) + float64(h[3+c])*t
			p.rgb[m][c] = uint8(math.RoundToEven(v))
		}
	}
	return p
}

// render draws the image of prompt, width x height, keeping only the top
// rows rows (the rest is black).
func render(prompt string, width, height, rows int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, width, height))
	draw(img, newPalette(prompt), rows)
	return img
}

// draw fills img, writing its pixel slice directly. Row y has the colours
// of row 0 shifted in palette index by b*y, so only the first row of each
// of the (at most 64) shifts is computed, the others are copies; and a row
// repeats every 64/gcd(a, 64) pixels, so only that much is computed.
func draw(img *image.NRGBA, p palette, rows int) {
	width := img.Rect.Dx()
	rows = min(rows, img.Rect.Dy())
	period := 64
	for period > 1 && p.a%(64/period*2) == 0 {
		period /= 2
	}
	var first [64]int // 1 + the first row with each shift
	for y := range rows {
		line := img.Pix[y*img.Stride : y*img.Stride+4*width]
		c := (p.b * y) & 63
		if f := first[c]; f > 0 {
			copy(line, img.Pix[(f-1)*img.Stride:])
			continue
		}
		first[c] = y + 1
		p.fill(line[:4*min(period, width)], c)
		for done := 4 * period; done < len(line); done *= 2 {
			copy(line[done:], line[:done])
		}
	}
	black := img.Pix[rows*img.Stride:]
	clear(black)
	for i := 3; i < len(black); i += 4 {
		black[i] = 0xff
	}
}

// fill writes the pixels of a row piece whose first palette index is c.
func (p *palette) fill(line []uint8, c int) {
	m := c
	for i := 0; i+4 <= len(line); i += 4 {
		rgb := &p.rgb[m]
		px := line[i : i+4 : i+4]
		px[0], px[1], px[2], px[3] = rgb[0], rgb[1], rgb[2], 0xff
		m = (m + p.a) & 63
	}
}

// pixels recycles pixel buffers between renderings.
var pixels sync.Pool

// renderPNG renders the image of prompt as an 8-bit RGB PNG.
func renderPNG(prompt string, width, height, rows int) []byte {
	n := 4 * width * height
	buf, _ := pixels.Get().(*[]byte)
	if buf == nil || cap(*buf) < n {
		b := make([]byte, n)
		buf = &b
	}
	img := &image.NRGBA{Pix: (*buf)[:n], Stride: 4 * width, Rect: image.Rect(0, 0, width, height)}
	draw(img, newPalette(prompt), rows)
	out := encodePNG(img)
	pixels.Put(buf)
	return out
}

// pngBuffers recycles the encoder's scratch buffers.
type pngBuffers struct{ p sync.Pool }

func (b *pngBuffers) Get() *png.EncoderBuffer {
	v, _ := b.p.Get().(*png.EncoderBuffer)
	return v
}

func (b *pngBuffers) Put(v *png.EncoderBuffer) { b.p.Put(v) }

var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngBuffers{}}

// encodePNG encodes an opaque image as an 8-bit RGB PNG.
func encodePNG(img *image.NRGBA) []byte {
	var buf bytes.Buffer
	buf.Grow(len(img.Pix)/8 + 256)
	if err := pngEncoder.Encode(&buf, img); err != nil {
		panic("demospace: encoding a PNG into memory: " + err.Error()) // cannot happen
	}
	return buf.Bytes()
}
