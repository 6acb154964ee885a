// Package logging holds what Gale's components share about logs.
package logging

import (
	"context"
	"log/slog"
)

// Library returns log for a library's own chatter (the TSDB replaying its
// WAL, mochi attaching listeners, the rule manager starting): its records
// below Warn go out at Debug, so that they show with --log-level debug and
// stay off the start-up screen otherwise. Warnings and errors keep their level.
func Library(log *slog.Logger) *slog.Logger {
	return slog.New(library{next: log.Handler()})
}

type library struct{ next slog.Handler }

// Enabled reports whether a record of level would be logged after demotion.
func (h library) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, demote(level))
}

// Handle logs r at its demoted level.
func (h library) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return h.next.Handle(ctx, r)
}

// WithAttrs returns the handler with attrs.
func (h library) WithAttrs(attrs []slog.Attr) slog.Handler {
	return library{next: h.next.WithAttrs(attrs)}
}

// WithGroup returns the handler within group name.
func (h library) WithGroup(name string) slog.Handler {
	return library{next: h.next.WithGroup(name)}
}

func demote(level slog.Level) slog.Level {
	if level < slog.LevelWarn {
		return min(level, slog.LevelDebug)
	}
	return level
}
