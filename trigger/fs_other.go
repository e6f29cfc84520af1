//go:build !linux

package trigger

import "errors"

var errNoExchange = errors.New("atomic exchange not supported")

var exchange = func(a, b string) error { return errNoExchange }

// remoteFS cannot tell network file systems apart here; inotify-like
// watchers on other systems are trusted.
func remoteFS(dir string) string { return "" }
