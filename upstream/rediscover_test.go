package upstream_test

import (
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
)

// Rediscover keeps the API of an unchanged app, without reading /info
// again; makes a new one when the app restarts or is redeployed; and keeps
// the last one while the app cannot be reached.
func TestRediscover(t *testing.T) {
	g := newGoldenSpace(t, "6.31.0")
	c, err := upstream.New(upstream.Config{Target: g.URL, HFToken: "hf_private"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	ctx := testCtx(t)
	first, err := c.API(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g.auth.Store("")
	same, err := c.Rediscover(ctx)
	if err != nil || same != first {
		t.Errorf("Rediscover(unchanged) = %p, %v; want the same API %p", same, err, first)
	}
	if n := g.infos.Load(); n != 1 {
		t.Errorf("/info was read %d times, want once", n)
	}
	if auth := g.auth.Load(); auth != "Bearer hf_private" {
		t.Errorf("the rediscovery's /config had X-HF-Authorization %q, want the Client's token", auth)
	}

	// A restart of the same app: Gradio gives it a new app_id.
	g.serve(t, "6.31.0", func(config map[string]any) { config["app_id"] = 2 })
	restarted, err := c.Rediscover(ctx)
	if err != nil || restarted == first || len(restarted.Endpoints) != len(first.Endpoints) {
		t.Errorf("Rediscover(restarted) = %p, %v; want a new API of the same endpoints", restarted, err)
	}

	// A redeploy onto Gradio 5.50: the same app, with one function more
	// before /describe, so its function index moves.
	fnIndex := func() int64 { // the function a job of /describe joins
		s, _ := visitor(t, c)
		if _, err := run(ctx, s, upstream.Call{Endpoint: "/describe", Data: []any{}}); upstream.CodeOf(err) != upstream.CodeQueueFull {
			t.Fatalf("Stream(/describe) = %v, want the space's queue_full", err)
		}
		return g.joined.Load()
	}
	before := fnIndex()
	g.serve(t, "5.50.0", nil)
	redeployed, err := c.Rediscover(ctx)
	if err != nil || redeployed == restarted || redeployed.Version != "5.50.0" {
		t.Fatalf("Rediscover(redeployed) = %+v, %v; want a new API of Gradio 5.50.0", redeployed, err)
	}
	if restarted.Version != "6.31.0" {
		t.Errorf("the old API changed: Version %s", restarted.Version)
	}
	if after := fnIndex(); after != before+1 {
		t.Errorf("/describe joined as function %d after the redeploy, want %d", after, before+1)
	}
	if n := g.infos.Load(); n != 3 {
		t.Errorf("/info was read %d times, want 3 (once per app)", n)
	}

	g.down.Store(true)
	if _, err := c.Rediscover(ctx); upstream.CodeOf(err) != upstream.CodeUnavailable {
		t.Errorf("Rediscover(down) = %v, want upstream_unavailable", err)
	}
	if api, err := c.API(ctx); api != redeployed || err != nil {
		t.Errorf("API() while the app is down = %p, %v; want the last API, %p", api, err, redeployed)
	}
	g.down.Store(false)
	if api, err := c.Rediscover(ctx); api != redeployed || err != nil {
		t.Errorf("Rediscover(back, unchanged) = %p, %v; want %p", api, err, redeployed)
	}
}

// Without an API yet, Rediscover discovers one, as API does.
func TestRediscoverFirst(t *testing.T) {
	c, _ := goldenClient(t, "5.50.0")
	api, err := c.Rediscover(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.API(testCtx(t)); again != api {
		t.Errorf("API() = %p, want the API Rediscover found, %p", again, api)
	}
}
