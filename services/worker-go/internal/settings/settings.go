// Package settings reads the worker's settings from the environment, with the same variables, defaults
// and error messages as the Python worker (services/worker/settings.py and services/envconfig.py).
package settings

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/swarm-ai-lab/worker-go/internal/protocol"
)

// Language is this worker's language, the first part of its id.
const Language = "go"

// Defaults shared with the Python worker.
const (
	DefaultGeminiModel = "gemini-flash-latest"
	DefaultHealthFile  = "/tmp/swarm-ai-lab-worker.health"
)

var (
	modelModes = []string{"auto", "gemini", "offline"}
	// EVENT_LOOP means nothing to a Go worker; it is read (and checked) only so that one environment
	// serves workers of every language.
	loopChoices = []string{"auto", "uvloop", "asyncio"}
	logLevels   = []string{"CRITICAL", "FATAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET"}
)

// Settings is everything the worker can be told.
type Settings struct {
	MQTTHost      string
	MQTTPort      int
	TopicPrefix   string
	MQTTUsername  string
	MQTTPassword  string // never logged
	MQTTTLSCA     string
	MQTTKeepalive int
	LogLevel      string
	EventLoop     string

	WorkerID             string
	WorkSeconds          float64
	ModelMode            string
	GeminiAPIKey         string // never logged
	GeminiAPIKeyFile     string
	GeminiModel          string
	GeminiBaseURL        string
	GeminiTimeoutSeconds float64
	OfflineLatencyMS     float64
	OfflineLatencySDMS   float64
	GRPCRetries          int
	ResultStream         bool
	GRPCTLSCA            string
	HealthFile           string
}

// NewWorkerID returns `go-worker-<6 hex>`.
func NewWorkerID() string { return protocol.MakeWorkerID(Language) }

// Env reads typed values from one environment; every error names its variable.
type Env struct{ Lookup func(string) (string, bool) }

// FromMap is an Env over a map (tests).
func FromMap(m map[string]string) Env {
	return Env{func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

// OSEnv is the process's environment.
func OSEnv() Env { return Env{os.LookupEnv} }

func (e Env) raw(name string) string {
	v, _ := e.Lookup(name)
	return pyStrip(v)
}

// Text: a string; empty or unset means the default.
func (e Env) Text(name, def string) string {
	if v := e.raw(name); v != "" {
		return v
	}
	return def
}

// Number: a finite number >= minimum.
func (e Env) Number(name string, def, minimum float64) (float64, error) {
	raw := e.raw(name)
	value := def
	if raw != "" {
		v, err := parsePyFloat(raw)
		if err != nil {
			return 0, fmt.Errorf("%s must be a number, got %s", name, protocol.PyRepr(raw))
		}
		value = v
	}
	if math.IsInf(value, 0) || math.IsNaN(value) || value < minimum {
		return 0, fmt.Errorf("%s must be a finite number >= %s, got %s", name, FormatG(minimum), protocol.PyRepr(raw))
	}
	return value, nil
}

// Integer: a whole number within [minimum, maximum] (maximum < minimum: no maximum).
func (e Env) Integer(name string, def, minimum, maximum int, hasMax bool) (int, error) {
	raw := e.raw(name)
	value := def
	if raw != "" {
		v, err := strconv.Atoi(strings.ReplaceAll(raw, "_", ""))
		if err != nil || strings.HasPrefix(raw, "_") || strings.HasSuffix(raw, "_") || strings.Contains(raw, "__") {
			return 0, fmt.Errorf("%s must be a whole number, got %s", name, protocol.PyRepr(raw))
		}
		value = v
	}
	if value < minimum || (hasMax && value > maximum) {
		bound := fmt.Sprintf(">= %d", minimum)
		if hasMax {
			bound = fmt.Sprintf("between %d and %d", minimum, maximum)
		}
		return 0, fmt.Errorf("%s must be %s, got %s", name, bound, protocol.PyRepr(raw))
	}
	return value, nil
}

// Boolean: 1/true/yes/on or 0/false/no/off (any case); empty means the default.
func (e Env) Boolean(name string, def bool) (bool, error) {
	v, _ := e.Lookup(name)
	if pyStrip(v) == "" {
		return def, nil
	}
	switch strings.ToLower(pyStrip(v)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s: expected a boolean (true/false), got %s", name, protocol.PyRepr(v))
}

// Choice: one of options (case-insensitive).
func (e Env) Choice(name, def string, options []string) (string, error) {
	value := strings.ToLower(e.Text(name, def))
	for _, o := range options {
		if value == o {
			return value, nil
		}
	}
	return "", fmt.Errorf("%s must be one of %s, got %s", name, strings.Join(options, ", "), protocol.PyRepr(value))
}

// ExistingFile: a path that must name a file, or "" when unset.
func (e Env) ExistingFile(name string) (string, error) {
	path := e.raw(name)
	if path == "" {
		return "", nil
	}
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: no such file %s", name, path)
	}
	return path, nil
}

// Secret: NAME, or else the content of the file NAME_FILE (Docker secrets).
func (e Env) Secret(name string) (string, error) {
	if direct := e.raw(name); direct != "" {
		return direct, nil
	}
	path := e.raw(name + "_FILE")
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: cannot read %s (%s)", name, path, Strerror(err))
	}
	return pyStrip(string(data)), nil
}

// brokerRe is the original system's MQTT_BROKER: `mosquitto`, `mosquitto:1883`, `mqtt://mosquitto`,
// `mqtt://mosquitto:1884` (services/envconfig.py's _BROKER).
var brokerRe = regexp.MustCompile(`^(?:(?i:mqtt)://)?([^\s:/@\[\]]+)(?::([0-9]{1,5}))?$`)

// MQTTBroker reads the original system's MQTT_BROKER, a host or a URL, with or without port: its host and
// port (0: none); "" when unset. It stands for MQTT_HOST and MQTT_PORT when they are unset.
func (e Env) MQTTBroker() (string, int, error) {
	raw := e.raw("MQTT_BROKER")
	if raw == "" {
		return "", 0, nil
	}
	m := brokerRe.FindStringSubmatch(raw)
	port := 0
	if m != nil && m[2] != "" {
		port, _ = strconv.Atoi(m[2])
	}
	if m == nil || (m[2] != "" && (port < 1 || port > 65535)) {
		return "", 0, fmt.Errorf("MQTT_BROKER must be host, host:port or mqtt://host[:port], got %s", protocol.PyRepr(raw))
	}
	return m[1], port, nil
}

// Strerror is the OS's reason for a failed file operation, as Python's e.strerror says it.
func Strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		text := errno.Error()
		if text != "" {
			return strings.ToUpper(text[:1]) + text[1:]
		}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// FromEnv reads every setting; the error is one line that names the variable.
func FromEnv(e Env) (*Settings, error) {
	s := &Settings{}
	var err error
	first := func(e error) {
		if err == nil && e != nil {
			err = e
		}
	}
	// Services' settings (envconfig.ServiceSettings), in the same order as Python's.
	// The original's MQTT_BROKER stands for MQTT_HOST and MQTT_PORT when they are unset (checked even then).
	brokerHost, brokerPort, ferr := e.MQTTBroker()
	first(ferr)
	s.MQTTHost = e.Text("MQTT_HOST", "127.0.0.1")
	if e.raw("MQTT_HOST") == "" && brokerHost != "" {
		s.MQTTHost = brokerHost
	}
	if e.raw("MQTT_PORT") == "" && brokerPort != 0 {
		s.MQTTPort = brokerPort
	} else {
		s.MQTTPort, ferr = e.Integer("MQTT_PORT", 1883, 1, 65535, true)
		first(ferr)
	}
	s.TopicPrefix = e.Text("TOPIC_PREFIX", protocol.DefaultPrefix)
	if perr := protocol.ValidPrefix(s.TopicPrefix); perr != nil {
		first(fmt.Errorf("TOPIC_PREFIX: %v", perr))
	}
	s.MQTTUsername = e.raw("MQTT_USERNAME")
	s.MQTTPassword, ferr = e.Secret("MQTT_PASSWORD")
	first(ferr)
	s.MQTTTLSCA, ferr = e.ExistingFile("MQTT_TLS_CA")
	first(ferr)
	s.MQTTKeepalive, ferr = e.Integer("MQTT_KEEPALIVE", 5, 1, 3600, true)
	first(ferr)
	s.LogLevel = strings.ToUpper(e.Text("LOG_LEVEL", "INFO"))
	if !contains(logLevels, s.LogLevel) {
		if _, nerr := strconv.Atoi(s.LogLevel); nerr != nil {
			first(fmt.Errorf("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got %s", protocol.PyRepr(s.LogLevel)))
		}
	}
	s.EventLoop, ferr = e.Choice("EVENT_LOOP", "auto", loopChoices)
	first(ferr)

	// The worker's own (services/worker/settings.py).
	s.WorkerID = e.Text("WORKER_ID", "")
	if s.WorkerID == "" {
		s.WorkerID = NewWorkerID()
	} else if !protocol.ValidWorkerID(s.WorkerID) {
		first(fmt.Errorf("WORKER_ID must be letters, digits and _.:- (at most 128), got %s", protocol.PyRepr(s.WorkerID)))
	}
	s.WorkSeconds, ferr = e.Number("WORK_SECONDS", 10.0, 0)
	first(ferr)
	s.ModelMode, ferr = e.Choice("MODEL_MODE", "auto", modelModes)
	first(ferr)
	s.GeminiAPIKey = e.raw("GEMINI_API_KEY")
	s.GeminiAPIKeyFile = e.raw("GEMINI_API_KEY_FILE")
	s.GeminiModel = e.Text("GEMINI_MODEL", DefaultGeminiModel)
	s.GeminiBaseURL = e.raw("GEMINI_BASE_URL")
	s.GeminiTimeoutSeconds, ferr = e.Number("GEMINI_TIMEOUT_SECONDS", 30.0, 0.001)
	first(ferr)
	s.OfflineLatencyMS, ferr = e.Number("OFFLINE_LATENCY_MS", 0, 0)
	first(ferr)
	s.OfflineLatencySDMS, ferr = e.Number("OFFLINE_LATENCY_SD_MS", 0, 0)
	first(ferr)
	if err == nil && s.OfflineLatencySDMS > 0 && s.OfflineLatencyMS == 0 {
		first(errors.New("OFFLINE_LATENCY_SD_MS > 0 needs OFFLINE_LATENCY_MS > 0"))
	}
	s.GRPCRetries, ferr = e.Integer("GRPC_RETRIES", 6, 0, 0, false)
	first(ferr)
	s.ResultStream, ferr = e.Boolean("RESULT_STREAM", true)
	first(ferr)
	s.GRPCTLSCA, ferr = e.ExistingFile("GRPC_TLS_CA")
	first(ferr)
	s.HealthFile = e.Text("HEALTH_FILE", DefaultHealthFile)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// MaxTaskMS is the longest a task may take here (simulated work plus the model's timeout): the master
// sizes its lease on it. Rounded half to even, as Python's round().
func (s *Settings) MaxTaskMS() int64 {
	return int64(math.RoundToEven((s.WorkSeconds + s.GeminiTimeoutSeconds) * 1000))
}

// LoadAPIKey returns GEMINI_API_KEY if set, else the stripped content of GEMINI_API_KEY_FILE, else "".
// The error names the file and the reason, never the content.
func LoadAPIKey(envKey, keyFile string) (string, error) {
	if k := pyStrip(envKey); k != "" {
		return k, nil
	}
	if keyFile == "" {
		return "", nil
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return "", fmt.Errorf("cannot read GEMINI_API_KEY_FILE %s: %s", protocol.PyRepr(keyFile), Strerror(err))
	}
	return pyStrip(string(data)), nil
}

// FormatG formats a number as Python's "{:g}" does for ordinary values (10.0 -> "10", 0.001 -> "0.001").
func FormatG(v float64) string {
	s := strconv.FormatFloat(v, 'g', 6, 64)
	if strings.Contains(s, "e") {
		mant, exp, _ := strings.Cut(s, "e")
		if strings.Contains(mant, ".") {
			mant = strings.TrimRight(strings.TrimRight(mant, "0"), ".")
		}
		sign := exp[0]
		digits := strings.TrimLeft(exp[1:], "0")
		if len(digits) < 2 {
			digits = strings.Repeat("0", 2-len(digits)) + digits
		}
		return mant + "e" + string(sign) + digits
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

var pyFloatRe = regexp.MustCompile(`^[+-]?((\d(_?\d)*)?\.?\d(_?\d)*([eE][+-]?\d(_?\d)*)?|(\d(_?\d)*)\.([eE][+-]?\d(_?\d)*)?|inf|infinity|nan)$`)

// parsePyFloat parses what Python's float() accepts (digits with underscores, inf, nan; no hex).
func parsePyFloat(raw string) (float64, error) {
	if !pyFloatRe.MatchString(strings.ToLower(raw)) {
		return 0, errors.New("not a number")
	}
	return strconv.ParseFloat(strings.ReplaceAll(raw, "_", ""), 64)
}

// IsPySpace is Python's str.isspace() for one character: Go's unicode.IsSpace plus the four
// information separators U+001C..U+001F.
func IsPySpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }

func pyStrip(s string) string { return strings.TrimFunc(s, IsPySpace) }

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
