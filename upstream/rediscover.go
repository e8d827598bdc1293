package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash"
)

// Rediscover reads the app's /config again, with the Client's
// credentials, to see whether the app changed since its API was read (a
// redeploy, a restart). If the app is the same, it returns the API the
// Client has, the very same pointer, without reading /info. If it
// changed, it reads /info and returns the new API, which the Client keeps
// from then on; jobs that hold the old one go on with it. If the app
// cannot be reached, it returns the error and the Client keeps its API.
// Without an API yet, it discovers one, as API does.
func (c *Client) Rediscover(ctx context.Context) (*API, error) {
	return c.discoverShared(ctx)
}

// fingerprint sums what an API is made from: the app's address, its
// version, protocol, routes and limits, its events and components (and so
// every function index), the texts of its translation keys, and its
// app_id, which Gradio changes on every start.
func (cfg *appConfig) fingerprint(base string) [sha256.Size]byte {
	h := sha256.New()
	field(h, []byte(base))
	field(h, []byte(cfg.Version))
	field(h, []byte(cfg.Protocol))
	field(h, []byte(cfg.APIPrefix))
	field(h, cfg.MaxFileSize)
	field(h, cfg.AppID)
	field(h, cfg.Translations)
	for _, list := range [][]json.RawMessage{cfg.Dependencies, cfg.Components} {
		field(h, binary.BigEndian.AppendUint64(nil, uint64(len(list))))
		for _, item := range list {
			field(h, item)
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// field writes b to h with its length first, so that no two lists of
// fields sum alike.
func field(h hash.Hash, b []byte) {
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
	h.Write(b)
}
