// Package web holds spacerelay's browser files: the JavaScript client
// module spacerelay.js with its types, and the demo page index.html that
// uses it. The relay serves them from FS. The folder is also the npm
// package spacerelay, whose package.json holds the version of both.
package web

import (
	"embed"
	"encoding/json"
	"fmt"
)

// FS holds index.html, spacerelay.js and spacerelay.d.ts at its root.
//
//go:embed index.html spacerelay.js spacerelay.d.ts
var FS embed.FS

//go:embed package.json
var packageJSON []byte

// Version is spacerelay's version, such as "0.3.0": the version field of
// package.json, the one place it is written, so that the relay and the
// npm package of its client always say the same.
var Version = mustVersion(packageJSON)

func mustVersion(b []byte) string {
	v, err := version(b)
	if err != nil {
		panic(err) // package.json is embedded at build time; its test catches this first
	}
	return v
}

func version(b []byte) (string, error) {
	var p struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return "", fmt.Errorf("web: package.json: %w", err)
	}
	if p.Version == "" {
		return "", fmt.Errorf("web: package.json has no version")
	}
	return p.Version, nil
}
