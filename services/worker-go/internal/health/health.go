// Package health keeps the worker's heartbeat file and checks it (`--check`), in the format of
// services/health.py, so that either language's check reads either language's file.
package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/swarm-ai-lab/worker-go/internal/settings"
)

const (
	// HeartbeatInterval is how often the file is rewritten.
	HeartbeatInterval = 2 * time.Second
	// PollInterval is how soon a connection that came or went shows in the file.
	PollInterval = 200 * time.Millisecond
	// StaleAfterBeats: a heartbeat older than this many intervals means a dead or hung worker.
	StaleAfterBeats = 3
)

// Format renders one heartbeat exactly as Python's json.dumps does.
func Format(workerID string, connected bool, unixSeconds float64, pid int) []byte {
	id, _ := json.Marshal(workerID)
	return []byte(fmt.Sprintf(`{"worker_id": %s, "connected": %t, "time": %s, "pid": %d}`,
		id, connected, pyFloat(unixSeconds), pid))
}

// pyFloat is Python's repr of a float (shortest text; always with a decimal point or exponent).
func pyFloat(v float64) string {
	if math.Abs(v) >= 1e16 || (v != 0 && math.Abs(v) < 1e-4) {
		return strconv.FormatFloat(v, 'e', -1, 64)
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	for _, c := range s {
		if c == '.' {
			return s
		}
	}
	return s + ".0"
}

// Heartbeat is the file of a running worker: rewritten every interval with whether the worker is
// connected to the broker, removed when the worker stops cleanly.
type Heartbeat struct {
	Path      string
	WorkerID  string
	Connected func() bool
	Interval  time.Duration
	mutex     sync.Mutex
	closed    bool
	failing   bool
	stop      chan struct{}
	done      chan struct{}
}

// NewHeartbeat returns a heartbeat; Start begins writing.
func NewHeartbeat(path, workerID string, connected func() bool) *Heartbeat {
	return &Heartbeat{Path: path, WorkerID: workerID, Connected: connected, Interval: HeartbeatInterval,
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Start writes the file now and then every interval, and as soon as the connection comes or goes.
func (h *Heartbeat) Start() {
	go func() {
		defer close(h.done)
		ticks := int(math.Max(1, math.Round(float64(h.Interval)/float64(PollInterval))))
		for {
			connected := h.Connected()
			h.Write(connected)
			for i := 0; i < ticks; i++ {
				select {
				case <-h.stop:
					return
				case <-time.After(h.Interval / time.Duration(ticks)):
				}
				if h.Connected() != connected {
					break
				}
			}
		}
	}()
}

// Write replaces the file atomically (a temporary file, then a rename); a failure is logged once.
func (h *Heartbeat) Write(connected bool) {
	now := float64(time.Now().UnixNano()) / 1e9
	beat := Format(h.WorkerID, connected, now, os.Getpid())
	temporary := filepath.Join(filepath.Dir(h.Path), fmt.Sprintf(".%s.%d.tmp", filepath.Base(h.Path), os.Getpid()))
	h.mutex.Lock()
	defer h.mutex.Unlock()
	if h.closed {
		return
	}
	err := os.WriteFile(temporary, beat, 0o644)
	if err == nil {
		err = os.Rename(temporary, h.Path)
	}
	if err != nil {
		if !h.failing {
			slog.Warn(fmt.Sprintf("cannot write the health file %s: %v", h.Path, err))
		}
		h.failing = true
		_ = os.Remove(temporary)
		return
	}
	if h.failing {
		slog.Info(fmt.Sprintf("health file %s written again", h.Path))
	}
	h.failing = false
}

// Close stops writing and removes the file: a worker that stopped is not healthy.
func (h *Heartbeat) Close() {
	h.mutex.Lock()
	if !h.closed {
		h.closed = true
		close(h.stop)
	}
	_ = os.Remove(h.Path)
	h.mutex.Unlock()
}

// Unhealthy says in one line why the worker is not able to do its job.
type Unhealthy struct{ Reason string }

func (u *Unhealthy) Error() string { return u.Reason }

// CheckWorker: healthy = the heartbeat file is fresh and says the worker is connected to the broker.
func CheckWorker(path string, interval time.Duration, now time.Time) (string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &Unhealthy{fmt.Sprintf("no heartbeat file %s: the worker is not running or has not started yet", path)}
	} else if err != nil {
		return "", &Unhealthy{fmt.Sprintf("cannot read the heartbeat file %s: %s", path, settings.Strerror(err))}
	}
	var beat struct {
		WorkerID  *json.RawMessage `json:"worker_id"`
		Connected *json.RawMessage `json:"connected"`
		Time      *float64         `json:"time"`
	}
	if json.Unmarshal(raw, &beat) != nil || beat.WorkerID == nil || beat.Connected == nil || beat.Time == nil {
		return "", &Unhealthy{fmt.Sprintf("the heartbeat file %s is not a worker's heartbeat", path)}
	}
	var workerID string
	if json.Unmarshal(*beat.WorkerID, &workerID) != nil {
		workerID = string(*beat.WorkerID)
	}
	age := float64(now.UnixNano())/1e9 - *beat.Time
	limit := StaleAfterBeats * interval.Seconds()
	if !(-limit <= age && age <= limit) { // a clock set back must not keep a dead worker's file fresh
		return "", &Unhealthy{fmt.Sprintf("worker %s: last heartbeat %.1f s ago (> %s s): gone or hung", workerID, age, settings.FormatG(limit))}
	}
	if string(*beat.Connected) != "true" {
		return "", &Unhealthy{fmt.Sprintf("worker %s is not connected to the MQTT broker", workerID)}
	}
	return fmt.Sprintf("worker %s is connected to MQTT (heartbeat %.1f s ago)", workerID, math.Max(age, 0)), nil
}

// RunCheck runs the check and returns the exit code: 0 healthy, 1 not (never 2, which Docker reserves);
// one line on stdout when healthy, on stderr when not.
func RunCheck(path string) int {
	line, err := CheckWorker(path, HeartbeatInterval, time.Now())
	if err != nil {
		fmt.Fprintf(os.Stderr, "unhealthy: %s\n", err)
		return 1
	}
	fmt.Printf("healthy: %s\n", line)
	return 0
}
