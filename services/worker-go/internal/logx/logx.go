// Package logx sets up the worker's log lines on stdout in the Python services' format:
// "2026-12-06 19:44:25,123 INFO worker-go: registered as go-worker-3f9a1c".
package logx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
)

// Level maps a Python logging level name (or number) to a slog level.
func Level(name string) slog.Level {
	switch name {
	case "DEBUG", "NOTSET":
		return slog.LevelDebug
	case "INFO":
		return slog.LevelInfo
	case "WARNING", "WARN":
		return slog.LevelWarn
	case "ERROR", "CRITICAL", "FATAL":
		return slog.LevelError
	}
	if n, err := strconv.Atoi(name); err == nil { // Python's numbers: 10 debug, 20 info, 30 warning, 40 error
		switch {
		case n <= 10:
			return slog.LevelDebug
		case n <= 20:
			return slog.LevelInfo
		case n <= 30:
			return slog.LevelWarn
		}
		return slog.LevelError
	}
	return slog.LevelInfo
}

type handler struct {
	out   io.Writer
	level slog.Level
	name  string
	mutex *sync.Mutex
}

// Setup makes slog's default logger write Python-style lines to out.
func Setup(out io.Writer, level, name string) {
	slog.SetDefault(slog.New(&handler{out: out, level: Level(level), name: name, mutex: &sync.Mutex{}}))
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	level := "INFO"
	switch {
	case r.Level >= slog.LevelError:
		level = "ERROR"
	case r.Level >= slog.LevelWarn:
		level = "WARNING"
	case r.Level < slog.LevelInfo:
		level = "DEBUG"
	}
	t := r.Time
	line := fmt.Sprintf("%s,%03d %s %s: %s", t.Format("2006-01-02 15:04:05"), t.Nanosecond()/1e6, level, h.name, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	h.mutex.Lock()
	defer h.mutex.Unlock()
	_, err := io.WriteString(h.out, line+"\n")
	return err
}

func (h *handler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *handler) WithGroup(string) slog.Handler      { return h }
