package health

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFormatIsPythons(t *testing.T) {
	// json.dumps({"worker_id": ..., "connected": ..., "time": time.time(), "pid": os.getpid()})
	got := string(Format("go-worker-abc123", true, 1765050000.25, 42))
	want := `{"worker_id": "go-worker-abc123", "connected": true, "time": 1765050000.25, "pid": 42}`
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if got := string(Format("w", false, 1765050000, 1)); !strings.Contains(got, `"time": 1765050000.0,`) {
		t.Fatalf("whole seconds: %s", got)
	}
}

func TestHeartbeatAndCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.health")
	if _, err := CheckWorker(path, HeartbeatInterval, time.Now()); err == nil || !strings.Contains(err.Error(), "no heartbeat file") {
		t.Fatalf("missing file: %v", err)
	}
	connected := false
	h := NewHeartbeat(path, "go-worker-abc123", func() bool { return connected })
	h.Write(false)
	if _, err := CheckWorker(path, HeartbeatInterval, time.Now()); err == nil || err.Error() != "worker go-worker-abc123 is not connected to the MQTT broker" {
		t.Fatalf("disconnected: %v", err)
	}
	connected = true
	h.Write(true)
	line, err := CheckWorker(path, HeartbeatInterval, time.Now())
	if err != nil || !strings.HasPrefix(line, "worker go-worker-abc123 is connected to MQTT (heartbeat ") {
		t.Fatalf("connected: %q %v", line, err)
	}
	var beat map[string]any
	raw, _ := os.ReadFile(path)
	if json.Unmarshal(raw, &beat) != nil || beat["pid"].(float64) != float64(os.Getpid()) {
		t.Fatalf("file: %s", raw)
	}
	if _, err := CheckWorker(path, HeartbeatInterval, time.Now().Add(7*time.Second)); err == nil || !strings.Contains(err.Error(), "gone or hung") {
		t.Fatalf("stale: %v", err)
	}
	if _, err := CheckWorker(path, HeartbeatInterval, time.Now().Add(-7*time.Second)); err == nil {
		t.Fatal("a file from the future passed")
	}
	os.WriteFile(path, []byte(`{"worker_id": "x"}`), 0o644)
	if _, err := CheckWorker(path, HeartbeatInterval, time.Now()); err == nil || !strings.Contains(err.Error(), "is not a worker's heartbeat") {
		t.Fatalf("bad file: %v", err)
	}
	h.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("Close left the file")
	}
	h.Write(true)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a write after Close brought the file back")
	}
}

func TestHeartbeatFollowsTheConnection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.health")
	var connected = make(chan bool, 1)
	state := false
	h := NewHeartbeat(path, "w", func() bool {
		select {
		case state = <-connected:
		default:
		}
		return state
	})
	h.Start()
	defer h.Close()
	time.Sleep(100 * time.Millisecond)
	connected <- true
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if _, err := CheckWorker(path, HeartbeatInterval, time.Now()); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the file did not show the connection within 1 s")
}
