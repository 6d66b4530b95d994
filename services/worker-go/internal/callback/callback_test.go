package callback

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/swarm-ai-lab/worker-go/pb"
)

// master is a fake result server: it records how each result came, and can refuse streams or fail calls.
type master struct {
	pb.UnimplementedWorkerCallbackServer
	mutex        sync.Mutex
	streamed     []string
	unary        []string
	noStreams    bool // answer StreamResults with UNIMPLEMENTED (the original master)
	failUnary    int  // the next n SendResult calls fail with UNAVAILABLE
	dropFirstAck bool
}

func (m *master) SendResult(_ context.Context, r *pb.TaskResult) (*pb.ResultAck, error) {
	m.mutex.Lock()
	defer m.mutex.Unlock()
	if m.failUnary > 0 {
		m.failUnary--
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	m.unary = append(m.unary, r.TaskId)
	return &pb.ResultAck{Success: r.ApiKey == "", Message: "unary"}, nil
}

func (m *master) StreamResults(s grpc.BidiStreamingServer[pb.TaskResult, pb.ResultAck]) error {
	if m.noStreams {
		return status.Error(codes.Unimplemented, "unknown method")
	}
	if err := s.SendHeader(nil); err != nil {
		return err
	}
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		m.mutex.Lock()
		m.streamed = append(m.streamed, r.TaskId)
		drop := m.dropFirstAck
		m.dropFirstAck = false
		m.mutex.Unlock()
		if drop {
			continue
		}
		if err := s.Send(&pb.ResultAck{Success: true, Message: "stream"}); err != nil {
			return err
		}
	}
}

func serve(t *testing.T, m *master) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterWorkerCallbackServer(srv, m)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

func newSender(t *testing.T) *Sender {
	s, err := NewSender(3, "", true)
	if err != nil {
		t.Fatal(err)
	}
	s.BaseDelay = 10 * time.Millisecond
	t.Cleanup(s.Close)
	return s
}

func TestResultsGoOnOneStreamOnceAccepted(t *testing.T) {
	m := &master{}
	target := serve(t, m)
	s := newSender(t)
	s.Prepare(target)
	time.Sleep(200 * time.Millisecond) // the master accepts the stream
	for _, id := range []string{"a", "b", "c"} {
		ack, err := s.Send(context.Background(), target, &pb.TaskResult{TaskId: id})
		if err != nil || !ack.Success || ack.Message != "stream" {
			t.Fatalf("%s: %v %v", id, ack, err)
		}
	}
	if len(m.streamed) != 3 || len(m.unary) != 0 {
		t.Fatalf("streamed %v, unary %v", m.streamed, m.unary)
	}
}

func TestSendResultUntilTheStreamIsAcceptedAndForGoodWithoutStreams(t *testing.T) {
	m := &master{noStreams: true}
	target := serve(t, m)
	s := newSender(t)
	// Not prepared: the first result goes by SendResult while the stream opens (and is refused).
	for _, id := range []string{"a", "b", "c"} {
		ack, err := s.Send(context.Background(), target, &pb.TaskResult{TaskId: id})
		if err != nil || ack.Message != "unary" {
			t.Fatalf("%s: %v %v", id, ack, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(m.unary) != 3 {
		t.Fatalf("unary %v", m.unary)
	}
	ep, _ := s.endpoint(target)
	ep.mutex.Lock()
	defer ep.mutex.Unlock()
	if !ep.unimplemented {
		t.Fatal("the sender did not note that the master has no streams")
	}
}

func TestUnavailableIsRetried(t *testing.T) {
	m := &master{noStreams: true, failUnary: 2}
	target := serve(t, m)
	s := newSender(t)
	ack, err := s.Send(context.Background(), target, &pb.TaskResult{TaskId: "a"})
	if err != nil || !ack.Success {
		t.Fatalf("%v %v", ack, err)
	}
	m.failUnary = 10
	_, err = s.Send(context.Background(), target, &pb.TaskResult{TaskId: "b"})
	var e *Error
	if !errors.As(err, &e) || e.Message != "master at "+target+" did not take the result: UNAVAILABLE restarting" {
		t.Fatalf("got %v", err)
	}
}

func TestNobodyListening(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	target := l.Addr().String()
	l.Close()
	s := newSender(t)
	s.Retries = 1
	_, err := s.Send(context.Background(), target, &pb.TaskResult{TaskId: "a"})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v", err)
	}
}

func TestCancelStopsTheRetries(t *testing.T) {
	m := &master{noStreams: true, failUnary: 1000}
	target := serve(t, m)
	s := newSender(t)
	s.Retries, s.BaseDelay = 100, 100*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	start := time.Now()
	if _, err := s.Send(ctx, target, &pb.TaskResult{TaskId: "a"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

func TestCodeName(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.Unavailable: "UNAVAILABLE", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.OK: "OK", codes.Unimplemented: "UNIMPLEMENTED"} {
		if got := CodeName(c); got != want {
			t.Errorf("%v: %s", c, got)
		}
	}
}

func TestADroppedAckIsSentAgainOnANewStream(t *testing.T) {
	m := &master{dropFirstAck: true}
	target := serve(t, m)
	s := newSender(t)
	s.CallTimeout = 300 * time.Millisecond
	s.Prepare(target)
	time.Sleep(200 * time.Millisecond)
	ack, err := s.Send(context.Background(), target, &pb.TaskResult{TaskId: "a"})
	if err != nil || !ack.Success {
		t.Fatalf("%v %v", ack, err)
	}
	// Sent again after the timeout: on the new stream once it is accepted, else by SendResult.
	if got := len(m.streamed) + len(m.unary); got != 2 {
		t.Fatalf("streamed %v, unary %v", m.streamed, m.unary)
	}
}
