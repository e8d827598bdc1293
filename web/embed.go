// Package web holds spacerelay's browser files: the JavaScript client
// module spacerelay.js with its types, and the demo page index.html that
// uses it. The relay serves them from FS.
package web

import "embed"

// FS holds index.html, spacerelay.js and spacerelay.d.ts at its root.
//
//go:embed index.html spacerelay.js spacerelay.d.ts
var FS embed.FS
