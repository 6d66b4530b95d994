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
