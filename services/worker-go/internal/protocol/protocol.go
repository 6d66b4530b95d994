// Package protocol is the wire contract of docs/PROTOCOL.md as the worker speaks it: topics, the JSON
// messages on MQTT and the worker id convention (services/protocol in Python).
package protocol

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultPrefix is the default TOPIC_PREFIX.
const DefaultPrefix = "upb"

// WorkerIDPattern is what a worker id must match: it becomes part of a topic.
const WorkerIDPattern = `[A-Za-z0-9_.:-]{1,128}`

var workerIDRe = regexp.MustCompile(`^` + WorkerIDPattern + `$`)

// ValidWorkerID tells whether id may be a worker id.
func ValidWorkerID(id string) bool { return workerIDRe.MatchString(id) }

// Separator joins a worker's language and its random part.
const Separator = "-worker-"

// MakeWorkerID returns a new id `<language>-worker-<6 hex digits>`.
func MakeWorkerID(language string) string {
	if language == "" || strings.Contains(language, Separator) {
		panic(fmt.Sprintf("invalid worker language %q", language))
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return language + Separator + hex.EncodeToString(b[:])
}

// NowMS is the wire's clock: milliseconds since the Unix epoch.
func NowMS() int64 { return time.Now().UnixMilli() }

// Topics are every topic the worker uses, under one prefix.
type Topics struct{ Prefix string }

// ValidPrefix checks a topic prefix as the Python side does.
func ValidPrefix(prefix string) error {
	if prefix == "" || strings.ContainsAny(prefix, "+#") || strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("invalid topic prefix %s", PyRepr(prefix))
	}
	return nil
}

func (t Topics) Register() string       { return t.Prefix + "/workers/register" }
func (t Topics) Status() string         { return t.Prefix + "/workers/status" }
func (t Topics) Tasks(id string) string { return t.Prefix + "/workers/" + id + "/tasks" }
func (t Topics) Logs() string           { return t.Prefix + "/logs" }
func (t Topics) MasterStatus() string   { return t.Prefix + "/master/status" }

// Register is `workers/register`.
type Register struct {
	WorkerID  string `json:"worker_id"`
	Language  string `json:"language"`
	Status    string `json:"status"`
	Timestamp int64  `json:"timestamp"`
	MaxTaskMS int64  `json:"max_task_ms,omitempty"`
	// TaskMessages is false from a worker that follows a lean master (no busy, idle or log line per task);
	// nil leaves the key out: it sends them.
	TaskMessages *bool `json:"task_messages,omitempty"`
}

// Status is `workers/status` (idle, busy, offline).
type Status struct {
	WorkerID  string  `json:"worker_id"`
	Status    string  `json:"status"`
	Timestamp *int64  `json:"timestamp,omitempty"`
	TaskID    *string `json:"task_id,omitempty"`
	Attempt   *int64  `json:"attempt,omitempty"`
}

// Log is one line on `logs`.
type Log struct {
	Timestamp int64  `json:"timestamp"`
	Source    string `json:"source"`
	Message   string `json:"message"`
}

// Task is one attempt at one task, from `workers/{id}/tasks`.
type Task struct {
	WorkerID     string
	SessionID    string
	Query        string
	APIKey       string
	GRPCEndpoint string
	Timestamp    int64
	TaskID       *string
	Attempt      *int64
	Token        *string
	Model        *string
}

// Presence is the master's retained `master/status`.
type Presence struct {
	Status    string
	Timestamp *int64
	// Lean is true when the master says `task_messages: false`: it needs no per-task messages.
	Lean bool
	// Epoch is the leader's epoch (standby masters), higher for each new leader; nil from a single master.
	Epoch *int64
}

// Encode renders a message as compact UTF-8 JSON without HTML escaping (as pydantic does).
func Encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only our own structs are encoded
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// DecodeError says why a payload is not the message expected.
type DecodeError struct{ Kind, Reason string }

func (e *DecodeError) Error() string { return "invalid " + e.Kind + ": " + e.Reason }

func object(kind string, raw []byte) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		var any_ any
		if json.Unmarshal(raw, &any_) == nil {
			return nil, &DecodeError{kind, "expected a JSON object, got " + jsonType(any_)}
		}
		return nil, &DecodeError{kind, "not UTF-8 JSON"}
	}
	return fields, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

type reader struct {
	kind   string
	fields map[string]json.RawMessage
	err    error
}

func (r *reader) fail(name, why string) {
	if r.err == nil {
		r.err = &DecodeError{r.kind, name + ": " + why}
	}
}

// raw returns the field, or nil when it is absent or null.
func (r *reader) raw(name string) json.RawMessage {
	v, ok := r.fields[name]
	if !ok || string(v) == "null" {
		return nil
	}
	return v
}

func (r *reader) str(name string, required bool) *string {
	v := r.raw(name)
	if v == nil {
		if required {
			r.fail(name, "Field required")
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		r.fail(name, "Input should be a valid string")
		return nil
	}
	return &s
}

// integer reads a strict integer (no strings, no fractions, no booleans).
func (r *reader) integer(name string, required bool, min *int64) *int64 {
	v := r.raw(name)
	if v == nil {
		if required {
			r.fail(name, "Field required")
		}
		return nil
	}
	// Strict, as pydantic's StrictInt: no strings, booleans or fractions (3.0 included).
	if !intRe.Match(v) {
		r.fail(name, "Input should be a valid integer")
		return nil
	}
	i, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		r.fail(name, "Input should be a valid integer")
		return nil
	}
	if min != nil && i < *min {
		r.fail(name, fmt.Sprintf("Input should be greater than or equal to %d", *min))
		return nil
	}
	return &i
}

var (
	zero  = int64(0)
	intRe = regexp.MustCompile(`^-?[0-9]+$`)
)

// DecodeTask reads a task message; unknown keys are ignored.
func DecodeTask(raw []byte) (*Task, error) {
	fields, err := object("task message", raw)
	if err != nil {
		return nil, err
	}
	r := &reader{kind: "task message", fields: fields}
	t := &Task{}
	if id := r.str("worker_id", true); id != nil {
		if !ValidWorkerID(*id) {
			r.fail("worker_id", "String should match pattern '^"+WorkerIDPattern+"$'")
		}
		t.WorkerID = *id
	}
	if s := r.str("session_id", true); s != nil {
		t.SessionID = *s
	}
	if s := r.str("query", true); s != nil {
		t.Query = *s
	}
	if s := r.str("api_key", false); s != nil {
		t.APIKey = *s
	}
	if s := r.str("grpc_endpoint", true); s != nil {
		t.GRPCEndpoint = *s
	}
	if ts := r.integer("timestamp", true, &zero); ts != nil {
		t.Timestamp = *ts
	}
	t.TaskID = r.str("task_id", false)
	t.Attempt = r.integer("attempt", false, nil)
	t.Token = r.str("token", false)
	t.Model = r.str("model", false)
	if r.err != nil {
		return nil, r.err
	}
	return t, nil
}

// DecodePresence reads the master's presence.
func DecodePresence(raw []byte) (*Presence, error) {
	fields, err := object("master presence", raw)
	if err != nil {
		return nil, err
	}
	r := &reader{kind: "master presence", fields: fields}
	p := &Presence{}
	if s := r.str("status", true); s != nil {
		if *s != "online" && *s != "offline" {
			r.fail("status", "Input should be 'online' or 'offline'")
		}
		p.Status = *s
	}
	p.Timestamp = r.integer("timestamp", false, &zero)
	// Anything but a JSON false (absent, true, another type) keeps the per-task messages, as Python's worker.
	p.Lean = string(bytes.TrimSpace(r.raw("task_messages"))) == "false"
	p.Epoch = r.integer("epoch", false, nil)
	if r.err != nil {
		return nil, r.err
	}
	return p, nil
}

// PyRepr quotes a string the way Python's repr() does for the common cases, so that error messages read
// the same from both workers.
func PyRepr(s string) string {
	quote := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}
