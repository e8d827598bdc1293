package demospace

import (
	"crypto/sha256"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// The image formula of SPEC.md, pixel by pixel, in the plainest way.
func TestRenderMatchesFormula(t *testing.T) {
	t.Parallel()
	as := map[int]bool{}
	for i := range 40 {
		prompt := fmt.Sprint("prompt ", i)
		h := sha256.Sum256([]byte(prompt))
		a, b := int(h[6]%7)+1, int(h[7]%7)+1
		as[a] = true
		img := render(prompt, 131, 70, 45)
		for i := range 131 * 70 {
			x, y := i%131, i/131
			tt := float64((a*x+b*y)%64) / 63
			want := [4]uint8{0, 0, 0, 255}
			if y < 45 {
				for c := range 3 {
					want[c] = uint8(math.Round(float64(h[c])*(1-tt) + float64(h[3+c])*tt))
				}
			}
			i := img.PixOffset(x, y)
			if got := [4]uint8(img.Pix[i : i+4]); got != want {
				t.Fatalf("%q (%d,%d) = %v, want %v", prompt, x, y, got, want)
			}
		}
	}
	if len(as) != 7 {
		t.Errorf("the prompts cover a in %v, want all of 1..7", as)
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		old, new any
		want     string
	}{
		{"Hello", "Hello, world", "[[append [] , world]]"},
		{"abc", "xyz", "[[replace [] xyz]]"},
		{nil, "x", "[[replace [] x]]"},
		{object{{"path", "/a"}, {"size", nil}}, object{{"path", "/b"}, {"size", nil}}, "[[replace [path] /b]]"},
		{object{{"k", 1}}, object{{"j", 1}}, "[[delete [k] <nil>] [add [j] 1]]"},
		{[]any{1, 2, 3, 4}, []any{1, 9}, "[[replace [1] 9] [delete [2] <nil>] [delete [2] <nil>]]"},
		{[]any{1}, []any{1, 2}, "[[add [1] 2]]"},
		{1, 1.0, "[]"},
	} {
		if got := fmt.Sprint(diff(tc.old, tc.new)); got != tc.want {
			t.Errorf("diff(%v, %v) = %s, want %s", tc.old, tc.new, got, tc.want)
		}
	}
}

func TestTimedelta(t *testing.T) {
	t.Parallel()
	for secs, want := range map[int64]string{
		0: "0:00:00", 150: "0:02:30", 36000: "10:00:00", 86400: "1 day, 0:00:00",
		93784: "1 day, 2:03:04", 2*86400 + 5: "2 days, 0:00:05", -10: "-1 day, 23:59:50",
	} {
		if got := timedelta(secs); got != want {
			t.Errorf("timedelta(%d) = %s, want %s", secs, got, want)
		}
	}
}

func TestEncodeJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    any
		want string
	}{
		{pyFloat(10), "10.0"}, {pyFloat(0.3), "0.3"}, {pyFloat(1e-5), "1e-05"}, {pyFloat(2.5e16), "2.5e+16"},
		{pyFloat(math.NaN()), "null"}, {"<b>é\n\"\x01", `"<b>é\n\"\u0001"`}, {"\xff", `"` + "\ufffd" + `"`},
		{object{{"b", 1}, {"a", []any{nil, true}}}, `{"b":1,"a":[null,true]}`},
		{map[string]any{"b": 1, "a": 2}, `{"a":2,"b":1}`}, {[]any{}, "[]"}, {object{}, "{}"},
	} {
		if got := string(encodeJSON(tc.v)); got != tc.want {
			t.Errorf("encodeJSON(%#v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

func TestLRU(t *testing.T) {
	t.Parallel()
	c := newLRU[string, int](2)
	c.put("a", 1)
	c.put("b", 2)
	c.get("a")
	if old, evicted := c.put("c", 3); !evicted || old.key != "b" {
		t.Errorf("evicted %v %v, want b", old, evicted)
	}
	if _, ok := c.peek("b"); ok || c.len() != 2 {
		t.Errorf("b still there, len %d", c.len())
	}
}

func TestQuotaStore(t *testing.T) {
	t.Parallel()
	q := newQuotas(60, 0, time.Now, 2)
	if left, _, ok := q.take("", 50); !ok || left != 10 {
		t.Errorf("take 50 = %d %v", left, ok)
	}
	if left, _, ok := q.take("", 11); ok || left != 10 {
		t.Errorf("take 11 of 10 = %d %v", left, ok)
	}
	if e := quotaError(75, 60, 0); e.message != "You have exceeded your free ZeroGPU quota (75s requested vs. 60s left). Try again in 0:02:30." {
		t.Errorf("quota error = %s", e.message)
	}
}

func TestQuotaRefill(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := newQuotas(10, time.Hour, func() time.Time { return now }, 4)
	if _, _, ok := q.take("a", 8); !ok {
		t.Fatal("first job refused")
	}
	now = now.Add(20 * time.Minute)
	left, wait, ok := q.take("a", 8)
	if ok || left != 2 || wait != 40*time.Minute {
		t.Errorf("take = %d, %v, %v; want refused, 2 left, back in 40m", left, wait, ok)
	}
	if e := quotaError(8, 2, wait); !strings.Contains(e.message, "Try again in 0:40:00.") {
		t.Errorf("quota error = %q", e.message)
	}
	now = now.Add(40 * time.Minute)
	if left, _, ok := q.take("a", 8); !ok || left != 2 {
		t.Errorf("after the refill: %d left, ok %v; want 2, true", left, ok)
	}
}
