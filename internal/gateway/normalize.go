package gateway

import (
	"errors"
	"strings"
)

// errEscapedSlash is refused with 400, as Envoy's path_with_escaped_slashes_action REJECT_REQUEST does.
var errEscapedSlash = errors.New("escaped slash or backslash in path")

// normalizePath gives the standalone proxy the path Envoy's HTTP connection manager would route on
// (normalize_path, merge_slashes, escaped slashes rejected), so both modes decide on the same path:
// percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), runs of slashes merged, and dot
// segments removed (RFC 3986 §5.2.4).
func normalizePath(raw string) (string, error) {
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		return "", errEscapedSlash
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '%' && i+2 < len(raw) {
			if c, ok := unhex(raw[i+1], raw[i+2]); ok && unreserved(c) {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(raw[i])
	}
	p := b.String()
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return removeDotSegments(p), nil
}

func removeDotSegments(p string) string {
	trailing := strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
	var out []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && res != "/" {
		res += "/"
	}
	return res
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(a, b byte) (byte, bool) {
	h, ok1 := hexval(a)
	l, ok2 := hexval(b)
	return h<<4 | l, ok1 && ok2
}

func hexval(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
