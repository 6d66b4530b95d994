package settings

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	s, err := FromEnv(FromMap(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^go-worker-[0-9a-f]{6}$`).MatchString(s.WorkerID) {
		t.Errorf("worker id %q", s.WorkerID)
	}
	want := Settings{
		MQTTHost: "127.0.0.1", MQTTPort: 1883, TopicPrefix: "upb", MQTTKeepalive: 5, LogLevel: "INFO",
		EventLoop: "auto", WorkerID: s.WorkerID, WorkSeconds: 10, ModelMode: "auto",
		GeminiModel: "gemini-flash-latest", GeminiTimeoutSeconds: 30, GRPCRetries: 6, ResultStream: true,
		HealthFile: "/tmp/swarm-ai-lab-worker.health",
	}
	if *s != want {
		t.Errorf("got %+v\nwant %+v", *s, want)
	}
	if s.MaxTaskMS() != 40000 {
		t.Errorf("max_task_ms %d", s.MaxTaskMS())
	}
	if a, b := NewWorkerID(), NewWorkerID(); a == b {
		t.Errorf("two ids alike: %s", a)
	}
}

func TestValues(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(ca, []byte("x"), 0o600)
	os.WriteFile(pw, []byte("  s3cret\n"), 0o600)
	s, err := FromEnv(FromMap(map[string]string{
		"MQTT_HOST": " broker ", "MQTT_PORT": "8883", "TOPIC_PREFIX": "lab/a", "MQTT_USERNAME": "worker",
		"MQTT_PASSWORD_FILE": pw, "MQTT_TLS_CA": ca, "MQTT_KEEPALIVE": "2", "LOG_LEVEL": "debug",
		"WORKER_ID": "go-worker-abc", "WORK_SECONDS": "0.2", "MODEL_MODE": "OFFLINE", "GEMINI_MODEL": "m",
		"GEMINI_BASE_URL": "http://x", "GEMINI_TIMEOUT_SECONDS": "1", "OFFLINE_LATENCY_MS": "5",
		"OFFLINE_LATENCY_SD_MS": "1", "GRPC_RETRIES": "0", "RESULT_STREAM": "off", "GRPC_TLS_CA": ca,
		"HEALTH_FILE": "/tmp/h", "EVENT_LOOP": "uvloop",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s.MQTTHost != "broker" || s.MQTTPort != 8883 || s.TopicPrefix != "lab/a" || s.MQTTPassword != "s3cret" ||
		s.MQTTTLSCA != ca || s.LogLevel != "DEBUG" || s.WorkerID != "go-worker-abc" || s.WorkSeconds != 0.2 ||
		s.ModelMode != "offline" || s.GRPCRetries != 0 || s.ResultStream || s.GRPCTLSCA != ca || s.MaxTaskMS() != 1200 {
		t.Errorf("got %+v", *s)
	}
	s, _ = FromEnv(FromMap(map[string]string{"MQTT_PASSWORD": "direct", "MQTT_PASSWORD_FILE": "/nonexistent"}))
	if s.MQTTPassword != "direct" {
		t.Errorf("direct password: %q", s.MQTTPassword)
	}
}

// Each bad value gives one line that names the variable (the Python worker's messages).
func TestErrors(t *testing.T) {
	cases := map[string]string{
		"MQTT_PORT=abc":                         "MQTT_PORT must be a whole number, got 'abc'",
		"MQTT_PORT=0":                           "MQTT_PORT must be between 1 and 65535, got '0'",
		"MQTT_PORT=70000":                       "MQTT_PORT must be between 1 and 65535, got '70000'",
		"MQTT_KEEPALIVE=0":                      "MQTT_KEEPALIVE must be between 1 and 3600, got '0'",
		"TOPIC_PREFIX=a/#":                      "TOPIC_PREFIX: invalid topic prefix 'a/#'",
		"TOPIC_PREFIX=a/":                       "TOPIC_PREFIX: invalid topic prefix 'a/'",
		"MQTT_TLS_CA=/nonexistent/ca":           "MQTT_TLS_CA: no such file /nonexistent/ca",
		"GRPC_TLS_CA=/nonexistent/ca":           "GRPC_TLS_CA: no such file /nonexistent/ca",
		"MQTT_PASSWORD_FILE=/nonexist":          "MQTT_PASSWORD_FILE: cannot read /nonexist (No such file or directory)",
		"WORKER_ID=a/b":                         "WORKER_ID must be letters, digits and _.:- (at most 128), got 'a/b'",
		"WORKER_ID=" + strings.Repeat("a", 129): "WORKER_ID must be letters, digits and _.:- (at most 128), got '" + strings.Repeat("a", 129) + "'",
		"WORK_SECONDS=ten":                      "WORK_SECONDS must be a number, got 'ten'",
		"WORK_SECONDS=-1":                       "WORK_SECONDS must be a finite number >= 0, got '-1'",
		"WORK_SECONDS=inf":                      "WORK_SECONDS must be a finite number >= 0, got 'inf'",
		"WORK_SECONDS=nan":                      "WORK_SECONDS must be a finite number >= 0, got 'nan'",
		"WORK_SECONDS=0x10":                     "WORK_SECONDS must be a number, got '0x10'",
		"GEMINI_TIMEOUT_SECONDS=0":              "GEMINI_TIMEOUT_SECONDS must be a finite number >= 0.001, got '0'",
		"MODEL_MODE=cloud":                      "MODEL_MODE must be one of auto, gemini, offline, got 'cloud'",
		"EVENT_LOOP=tokio":                      "EVENT_LOOP must be one of auto, uvloop, asyncio, got 'tokio'",
		"RESULT_STREAM=maybe":                   "RESULT_STREAM: expected a boolean (true/false), got 'maybe'",
		"GRPC_RETRIES=-1":                       "GRPC_RETRIES must be >= 0, got '-1'",
		"GRPC_RETRIES=1.5":                      "GRPC_RETRIES must be a whole number, got '1.5'",
		"OFFLINE_LATENCY_SD_MS=3":               "OFFLINE_LATENCY_SD_MS > 0 needs OFFLINE_LATENCY_MS > 0",
		"LOG_LEVEL=loud":                        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
	}
	for assignment, want := range cases {
		name, value, _ := strings.Cut(assignment, "=")
		_, err := FromEnv(FromMap(map[string]string{name: value}))
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %q", assignment, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: more than one line", assignment)
		}
	}
}

func TestNumbersAsPythonReadsThem(t *testing.T) {
	for raw, want := range map[string]float64{"1e3": 1000, "1_000": 1000, ".5": 0.5, "5.": 5, "+2": 2, " 3 ": 3} {
		s, err := FromEnv(FromMap(map[string]string{"WORK_SECONDS": raw}))
		if err != nil || s.WorkSeconds != want {
			t.Errorf("%q: %v %v", raw, s, err)
		}
	}
}

func TestAPIKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	os.WriteFile(file, []byte("\n from-file \n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, c := range []struct{ env, file, want string }{
		{" direct ", file, "direct"}, {"", file, "from-file"}, {"", "", ""}, {"", empty, ""},
	} {
		got, err := LoadAPIKey(c.env, c.file)
		if err != nil || got != c.want {
			t.Errorf("%+v: %q %v", c, got, err)
		}
	}
	_, err := LoadAPIKey("", filepath.Join(dir, "missing"))
	if err == nil || err.Error() != "cannot read GEMINI_API_KEY_FILE '"+filepath.Join(dir, "missing")+"': No such file or directory" {
		t.Errorf("got %v", err)
	}
}

func TestFormatG(t *testing.T) {
	for v, want := range map[float64]string{10: "10", 0.001: "0.001", 0.25: "0.25", 30: "30", 1e6: "1e+06", 1234567: "1.23457e+06", 0: "0"} {
		if got := FormatG(v); got != want {
			t.Errorf("FormatG(%v) = %q, want %q", v, got, want)
		}
	}
}

// The original system's MQTT_BROKER stands for MQTT_HOST and MQTT_PORT when they are unset
// (services/envconfig.py's precedence: our own variables win, a port inside MQTT_BROKER beats the default).
func TestMQTTBroker(t *testing.T) {
	cases := []struct {
		env  map[string]string
		host string
		port int
	}{
		{map[string]string{"MQTT_BROKER": "mosquitto"}, "mosquitto", 1883},
		{map[string]string{"MQTT_BROKER": "mosquitto:1884"}, "mosquitto", 1884},
		{map[string]string{"MQTT_BROKER": "mqtt://mosquitto"}, "mosquitto", 1883},
		{map[string]string{"MQTT_BROKER": " MQTT://10.0.0.7:1885 "}, "10.0.0.7", 1885},
		{map[string]string{"MQTT_BROKER": "mqtt://mosquitto:1884", "MQTT_HOST": "broker"}, "broker", 1884},
		{map[string]string{"MQTT_BROKER": "mqtt://mosquitto:1884", "MQTT_PORT": "1999"}, "mosquitto", 1999},
		{map[string]string{"MQTT_BROKER": "mosquitto", "MQTT_PORT": "1999"}, "mosquitto", 1999},
		{map[string]string{"MQTT_BROKER": "", "MQTT_HOST": ""}, "127.0.0.1", 1883},
	}
	for _, c := range cases {
		s, err := FromEnv(FromMap(c.env))
		if err != nil || s.MQTTHost != c.host || s.MQTTPort != c.port {
			t.Errorf("%v: got %v %v", c.env, s, err)
		}
	}
	for _, bad := range []string{"http://x", "mqtt://:99999", "mqtt://x:0", "mqtt://x:70000", "mqtt://x/", "x:y", "u@x", "mqtts://x", "mqtt://"} {
		want := "MQTT_BROKER must be host, host:port or mqtt://host[:port], got '" + bad + "'"
		for _, env := range []map[string]string{{"MQTT_BROKER": bad}, {"MQTT_BROKER": bad, "MQTT_HOST": "h", "MQTT_PORT": "1"}} {
			_, err := FromEnv(FromMap(env))
			if err == nil || err.Error() != want {
				t.Errorf("%v: got %v, want %q", env, err, want)
			}
		}
	}
}
