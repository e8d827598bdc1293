package demospace

import (
	"net/http"
	"net/url"
	"strings"
)

// rootURL is the public root URL of the Space as Gradio's get_root_url
// computes it for a request to route: the first X-Forwarded-Host (made
// https by X-Forwarded-Proto: https), else X-Gradio-Server or the request
// URL minus route. The path the client asked for is used, so a Space
// mounted under a prefix (http.StripPrefix) gets it in its URLs.
func rootURL(r *http.Request, route string) string {
	proto := firstValue(r.Header.Get("X-Forwarded-Proto"))
	if host := firstValue(r.Header.Get("X-Forwarded-Host")); host != "" {
		root := strings.TrimRight("http://"+host, "/")
		if proto == "https" {
			root = "https://" + strings.TrimPrefix(root, "http://")
		}
		return root
	}
	root := firstValue(r.Header.Get("X-Gradio-Server"))
	if root == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		root = scheme + "://" + r.Host + requestPath(r)
	} else if i := strings.IndexByte(root, '?'); i >= 0 {
		root = root[:i]
	}
	root = strings.TrimRight(root, "/")
	if proto == "https" {
		root = strings.Replace(root, "http://", "https://", 1)
	}
	route = strings.TrimRight(route, "/")
	root = strings.TrimSuffix(root, route)
	return strings.TrimRight(root, "/")
}

// requestPath is the path the client sent, before any prefix stripping.
func requestPath(r *http.Request) string {
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil && r.RequestURI != "" {
		return u.EscapedPath()
	}
	return r.URL.EscapedPath()
}

func firstValue(h string) string {
	first, _, _ := strings.Cut(h, ",")
	return strings.TrimSpace(first)
}
