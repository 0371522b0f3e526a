//go:build tools

// Package tools pins the etcd server this module builds. etcd's own server module has replace lines, so
// `go install go.etcd.io/etcd/server/v3@v3.6.5` refuses it; this consumer module builds it instead.
// Debian's etcd 3.4.23 is too old for watch-list streams: the API server turns them away
// ("RequestWatchProgress is disabled") and kwok, whose client-go requests them, then sees pods 10-40 s late.
package tools

import _ "go.etcd.io/etcd/server/v3"
