// Package callback sends results to the master over gRPC: one channel and one long-lived StreamResults
// call per master, SendResult until the stream is accepted and for good when the master has no streams,
// retries with jittered exponential backoff (services/worker/callback.py in Python).
package callback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/swarm-ai-lab/worker-go/pb"
)

// CallTimeout bounds one try: a SendResult call, or the wait for a streamed result's ack.
const CallTimeout = 10 * time.Second

// Failures worth retrying: the master is restarting, overloaded or briefly unreachable.
var retryable = map[codes.Code]bool{
	codes.Unavailable: true, codes.DeadlineExceeded: true, codes.ResourceExhausted: true,
	codes.Aborted: true, codes.Internal: true, codes.Unknown: true,
}

// Error: the result could not be delivered to the master.
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

// CodeName is a status code as the Python worker names it: UNAVAILABLE, DEADLINE_EXCEEDED, ...
func CodeName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

type ackOrErr struct {
	ack *pb.ResultAck
	err error
}

// stream is one StreamResults call: accepted once the master sends its headers; one ack per result.
type stream struct {
	call     grpc.BidiStreamingClient[pb.TaskResult, pb.ResultAck]
	cancel   context.CancelFunc
	acks     chan ackOrErr // the reader's acks, then its final error
	accepted chan struct{}
	done     chan struct{}
}

func (s *stream) ready() bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case <-s.accepted:
		return true
	default:
		return false
	}
}

type endpoint struct {
	conn          *grpc.ClientConn
	client        pb.WorkerCallbackClient
	mutex         sync.Mutex
	current       *stream
	unimplemented bool // the master has no StreamResults (the original master)
}

// Sender delivers results; safe for use by one task at a time (the worker's loop) plus Prepare.
type Sender struct {
	Retries   int
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// CallTimeout bounds one try (default: the package's CallTimeout).
	CallTimeout time.Duration
	stream      bool
	creds       credentials.TransportCredentials
	mutex       sync.Mutex
	endpoints   map[string]*endpoint
}

// NewSender returns a sender; tlsCA "" means plaintext, streams=false means SendResult only.
func NewSender(retries int, tlsCA string, streams bool) (*Sender, error) {
	creds := insecure.NewCredentials()
	if tlsCA != "" {
		var err error
		if creds, err = credentials.NewClientTLSFromFile(tlsCA, ""); err != nil {
			return nil, fmt.Errorf("GRPC_TLS_CA: cannot use %s: %v", tlsCA, err)
		}
	}
	return &Sender{Retries: retries, BaseDelay: 200 * time.Millisecond, MaxDelay: 5 * time.Second,
		CallTimeout: CallTimeout, stream: streams, creds: creds, endpoints: map[string]*endpoint{}}, nil
}

func (s *Sender) endpoint(target string) (*endpoint, error) {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	if ep, ok := s.endpoints[target]; ok {
		return ep, nil
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(s.creds))
	if err != nil {
		return nil, err
	}
	ep := &endpoint{conn: conn, client: pb.NewWorkerCallbackClient(conn)}
	s.endpoints[target] = ep
	return ep, nil
}

// Prepare starts connecting to target and opens its result stream now (a task starts), so that the
// result pays for neither.
func (s *Sender) Prepare(target string) {
	ep, err := s.endpoint(target)
	if err != nil {
		return
	}
	ep.conn.Connect()
	if s.stream {
		ep.mutex.Lock()
		if !ep.unimplemented {
			ep.open()
		}
		ep.mutex.Unlock()
	}
}

// open returns the open call, a new one when there is none or it has ended; ep.mutex is held.
func (ep *endpoint) open() *stream {
	if ep.current != nil {
		select {
		case <-ep.current.done:
		default:
			return ep.current
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &stream{cancel: cancel, acks: make(chan ackOrErr, 1), accepted: make(chan struct{}), done: make(chan struct{})}
	ep.current = st
	go ep.read(ctx, st)
	return st
}

// read opens the call (it may wait for a connection), notes when the master accepts it, and hands each
// ack to the result waiting for it; when the call ends it hands over why.
func (ep *endpoint) read(ctx context.Context, st *stream) {
	defer close(st.done)
	fail := func(err error) {
		if status.Code(err) == codes.Unimplemented {
			slog.Info("master takes no result streams: one call per result")
			ep.mutex.Lock()
			ep.unimplemented = true
			ep.mutex.Unlock()
		}
		if status.Code(err) == codes.Canceled {
			err = status.Errorf(codes.Unavailable, "result stream cancelled: %s", status.Convert(err).Message())
		}
		select {
		case st.acks <- ackOrErr{err: err}:
		default:
		}
	}
	call, err := ep.client.StreamResults(ctx)
	if err != nil {
		fail(err)
		return
	}
	if _, err := call.Header(); err != nil {
		fail(err)
		return
	}
	st.call = call
	close(st.accepted)
	for {
		ack, err := call.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the master closed the result stream")
			}
			fail(err)
			return
		}
		select {
		case st.acks <- ackOrErr{ack: ack}:
		default: // nobody waits for it (its sender gave up and closed the call): drop it
		}
	}
}

// send writes one result on an accepted stream and waits at most timeout for its ack.
func (ep *endpoint) send(ctx context.Context, st *stream, result *pb.TaskResult, timeout time.Duration) (*pb.ResultAck, error) {
	// A call that has ended refuses the write; its reader then reports the call's error.
	_ = st.call.Send(result)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case got := <-st.acks:
		return got.ack, got.err
	case <-timer.C:
		st.cancel() // the master did not answer in time: start over on a new call (this one may be stuck)
		return nil, status.Error(codes.DeadlineExceeded, "no ack for the result in time")
	case <-ctx.Done():
		st.cancel()
		return nil, ctx.Err()
	}
}

func (s *Sender) sendOnce(ctx context.Context, target string, result *pb.TaskResult) (*pb.ResultAck, error) {
	ep, err := s.endpoint(target)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad endpoint: %v", err)
	}
	if s.stream {
		ep.mutex.Lock()
		var st *stream
		if !ep.unimplemented {
			st = ep.open()
		}
		ep.mutex.Unlock()
		if st != nil && st.ready() {
			return ep.send(ctx, st, result, s.CallTimeout)
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, s.CallTimeout)
	defer cancel()
	return ep.client.SendResult(callCtx, result)
}

// Send delivers result, retrying transient failures with jittered exponential backoff; a *Error when it
// cannot, ctx.Err() when ctx ends first.
func (s *Sender) Send(ctx context.Context, target string, result *pb.TaskResult) (*pb.ResultAck, error) {
	delay := s.BaseDelay
	for attempt := 1; ; attempt++ {
		ack, err := s.sendOnce(ctx, target, result)
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		st := status.Convert(err)
		if !retryable[st.Code()] || attempt > s.Retries {
			return nil, &Error{fmt.Sprintf("master at %s did not take the result: %s %s", target, CodeName(st.Code()), st.Message())}
		}
		slog.Warn(fmt.Sprintf("result to %s failed (%s), retry %d/%d in %.1f s", target, CodeName(st.Code()), attempt, s.Retries, delay.Seconds()))
		wait := time.Duration(float64(delay) * (0.5 + rand.Float64()))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay = min(s.MaxDelay, delay*2)
	}
}

// Close ends every stream and closes every channel.
func (s *Sender) Close() {
	s.mutex.Lock()
	defer s.mutex.Unlock()
	for _, ep := range s.endpoints {
		ep.mutex.Lock()
		if ep.current != nil {
			ep.current.cancel()
		}
		ep.mutex.Unlock()
		_ = ep.conn.Close()
	}
	s.endpoints = map[string]*endpoint{}
}
