package worker

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/swarm-ai-lab/worker-go/internal/callback"
	"github.com/swarm-ai-lab/worker-go/internal/models"
	"github.com/swarm-ai-lab/worker-go/internal/protocol"
	"github.com/swarm-ai-lab/worker-go/internal/settings"
)

func TestQueueIsFIFOAndCancellable(t *testing.T) {
	q := newQueue()
	for _, id := range []string{"a", "b", "c"} {
		id := id
		q.put(&protocol.Task{TaskID: &id})
	}
	for _, want := range []string{"a", "b", "c"} {
		task, ok := q.get(context.Background())
		if !ok || *task.TaskID != want {
			t.Fatalf("got %v, want %s", task, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := q.get(ctx); ok {
		t.Fatal("got a task from an empty queue")
	}
}

func TestSleepAtLeast(t *testing.T) {
	start := time.Now()
	if err := sleepAtLeast(context.Background(), 30*time.Millisecond); err != nil || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := sleepAtLeast(ctx, 10*time.Second); err == nil {
		t.Fatal("not cancelled")
	}
}

// Without a broker the worker keeps trying, is not connected, and still stops at once.
func TestStopsWithoutABroker(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s, err := settings.FromEnv(settings.FromMap(map[string]string{"MQTT_PORT": strconv.Itoa(port), "WORK_SECONDS": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	sender, _ := callback.NewSender(0, "", true)
	r, err := New(s, models.NewOffline(0, 0), sender)
	if err != nil {
		t.Fatal(err)
	}
	if r.maxTaskMS != 30000 {
		t.Fatalf("max_task_ms %d", r.maxTaskMS)
	}
	r.Start()
	time.Sleep(300 * time.Millisecond)
	if r.Connected() {
		t.Fatal("connected to nothing")
	}
	start := time.Now()
	r.Stop(2 * time.Second)
	if time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("stop took %v", time.Since(start))
	}
}

// A presence with a lower epoch than one already seen is ignored entirely (docs/PROTOCOL.md, Epochs); one
// without an epoch is read as always.
func TestPresenceEpochs(t *testing.T) {
	r := &Runner{}
	see := func(raw string) bool {
		t.Helper()
		p, err := protocol.DecodePresence([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return r.takePresence(p)
	}
	for i, step := range []struct {
		raw      string
		register bool
		lean     bool
	}{
		{`{"status":"online","timestamp":1}`, true, false},
		{`{"status":"online","timestamp":1}`, false, false}, // the same master
		{`{"status":"online","timestamp":2,"epoch":7}`, true, false},
		{`{"status":"online","timestamp":3,"epoch":5,"task_messages":false}`, false, false}, // a deposed leader
		{`{"status":"online","timestamp":2,"epoch":7}`, false, false},                       // still the one we know
		{`{"status":"online","timestamp":4}`, true, false},                                  // no epoch: as always
		{`{"status":"online","timestamp":5,"epoch":6}`, false, false},                       // 7 is still the highest
		{`{"status":"online","timestamp":6,"epoch":7,"task_messages":false}`, true, true},   // the same epoch, new timestamp
		{`{"status":"offline","epoch":9}`, false, true},                                     // a newer leader's Will
		{`{"status":"online","timestamp":7,"epoch":8}`, false, true},                        // older than that leader
		{`{"status":"offline","epoch":3}`, false, true},
		{`{"status":"online","timestamp":8,"epoch":10}`, true, false},
	} {
		if got := see(step.raw); got != step.register || r.lean != step.lean {
			t.Errorf("step %d %s: register %v, lean %v; want %v, %v", i, step.raw, got, r.lean, step.register, step.lean)
		}
	}
}
