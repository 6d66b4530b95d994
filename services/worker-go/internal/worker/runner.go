// Package worker is the worker's life: stay connected to the broker, register, take tasks one at a time,
// answer, report (services/worker/runner.py in Python).
package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/swarm-ai-lab/worker-go/internal/callback"
	"github.com/swarm-ai-lab/worker-go/internal/models"
	"github.com/swarm-ai-lab/worker-go/internal/protocol"
	"github.com/swarm-ai-lab/worker-go/internal/settings"
	"github.com/swarm-ai-lab/worker-go/pb"
)

const publishTimeout = 10 * time.Second

// Runner connects to MQTT and processes the tasks addressed to this worker, in arrival order.
type Runner struct {
	settings  *settings.Settings
	workerID  string
	topics    protocol.Topics
	model     models.Model
	sender    *callback.Sender
	client    mqtt.Client
	maxTaskMS int64
	queue     *queue
	// registered once onConnect has subscribed and registered; with the connection open, the worker is
	// connected (the heartbeat's "connected").
	registered atomic.Bool

	mutex         sync.Mutex
	busy          bool
	current       *protocol.Task // the task being worked on
	masterStarted *int64         // timestamp of the master presence we last saw
	masterEpoch   *int64         // the highest epoch of a master presence seen: a lower one is ignored
	lean          bool           // the master's presence said it needs no per-task messages
	closing       bool           // the goodbye is being sent: nothing may follow it

	workCancel context.CancelFunc
	workDone   chan struct{}
}

// New returns a runner; Start connects and starts the work loop.
func New(s *settings.Settings, model models.Model, sender *callback.Sender) (*Runner, error) {
	r := &Runner{
		settings:  s,
		workerID:  s.WorkerID,
		topics:    protocol.Topics{Prefix: s.TopicPrefix},
		model:     model,
		sender:    sender,
		maxTaskMS: s.MaxTaskMS(),
		queue:     newQueue(),
		workDone:  make(chan struct{}),
	}
	opts, err := r.clientOptions()
	if err != nil {
		return nil, err
	}
	r.client = mqtt.NewClient(opts)
	return r, nil
}

// Connected tells whether the worker is connected to the broker and has registered.
func (r *Runner) Connected() bool { return r.registered.Load() && r.client.IsConnectionOpen() }

func (r *Runner) clientOptions() (*mqtt.ClientOptions, error) {
	s := r.settings
	scheme := "tcp"
	opts := mqtt.NewClientOptions()
	if s.MQTTTLSCA != "" {
		pem, err := os.ReadFile(s.MQTTTLSCA)
		if err != nil {
			return nil, fmt.Errorf("MQTT_TLS_CA: cannot read %s (%s)", s.MQTTTLSCA, settings.Strerror(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("MQTT_TLS_CA: no certificate in %s", s.MQTTTLSCA)
		}
		// Verifies the broker's certificate and host name, as Python's ssl.create_default_context does.
		opts.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: s.MQTTHost, MinVersion: tls.VersionTLS12})
		scheme = "ssl"
	}
	opts.AddBroker(scheme + "://" + net.JoinHostPort(s.MQTTHost, strconv.Itoa(s.MQTTPort)))
	opts.SetClientID(r.workerID) // the broker's ACL lets a worker read only its own task topic
	if s.MQTTUsername != "" {
		opts.SetUsername(s.MQTTUsername)
		opts.SetPassword(s.MQTTPassword)
	}
	opts.SetProtocolVersion(4)  // MQTT 3.1.1
	opts.SetCleanSession(false) // the broker keeps our task messages while we reconnect
	opts.SetKeepAlive(time.Duration(s.MQTTKeepalive) * time.Second)
	opts.SetPingTimeout(time.Duration(s.MQTTKeepalive) * time.Second)
	opts.SetBinaryWill(r.topics.Status(), protocol.Encode(protocol.Status{WorkerID: r.workerID, Status: "offline"}), 1, false)
	opts.SetAutoReconnect(true)
	opts.SetConnectRetry(true)
	opts.SetConnectRetryInterval(500 * time.Millisecond)
	opts.SetMaxReconnectInterval(10 * time.Second)
	opts.SetConnectTimeout(10 * time.Second)
	opts.SetWriteTimeout(publishTimeout)
	opts.SetResumeSubs(true)
	opts.SetOrderMatters(true) // handlers are quick: they only queue tasks and publish without waiting
	opts.SetDefaultPublishHandler(r.onMessage)
	opts.SetOnConnectHandler(r.onConnect)
	opts.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		switch n := n.(type) {
		case mqtt.ConnectionNotificationLost:
			slog.Warn(fmt.Sprintf("MQTT connection lost (%v); reconnecting", n.Reason))
		case mqtt.ConnectionNotificationFailed:
			slog.Warn(fmt.Sprintf("MQTT connection refused or failed (%v); retrying", n.Reason))
		}
	})
	return opts, nil
}

// Start connects (retrying in the background until it succeeds) and starts the work loop.
func (r *Runner) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.workCancel = cancel
	go r.work(ctx)
	r.client.Connect() // with ConnectRetry the token completes only once connected: not waited for
}

func (r *Runner) onConnect(c mqtt.Client) {
	token := c.SubscribeMultiple(map[string]byte{r.topics.Tasks(r.workerID): 1, r.topics.MasterStatus(): 1}, nil)
	if !token.WaitTimeout(publishTimeout) || token.Error() != nil {
		slog.Warn(fmt.Sprintf("could not subscribe: %v", token.Error()))
	}
	r.register()
	r.registered.Store(true)
}

// register announces this worker; a worker in the middle of a task says so right after.
func (r *Runner) register() {
	r.mutex.Lock()
	lean := r.lean
	r.mutex.Unlock()
	msg := protocol.Register{WorkerID: r.workerID, Language: settings.Language, Status: "idle",
		Timestamp: protocol.NowMS(), MaxTaskMS: r.maxTaskMS}
	if lean {
		no := false
		msg.TaskMessages = &no
	}
	if !r.publish(r.topics.Register(), protocol.Encode(msg), 1) {
		return
	}
	r.mutex.Lock()
	busy, current := r.busy, r.current
	r.mutex.Unlock()
	if busy {
		r.publishStatus("busy", current)
	}
	slog.Info("registered as " + r.workerID)
}

func (r *Runner) onMessage(_ mqtt.Client, m mqtt.Message) {
	defer func() { // one bad message must not take the process down
		if p := recover(); p != nil {
			slog.Error(fmt.Sprintf("error while handling a message on %s: %v", m.Topic(), p))
		}
	}()
	if m.Topic() == r.topics.MasterStatus() {
		p, err := protocol.DecodePresence(m.Payload())
		if err != nil {
			slog.Warn(fmt.Sprintf("ignored a bad message on %s: %v", m.Topic(), err))
			return
		}
		// Every master we see for the first time learns about us at once: a restarted one, and also the
		// first, when we started before it and our registration reached nobody.
		if r.takePresence(p) {
			r.register()
		}
		return
	}
	if m.Topic() != r.topics.Tasks(r.workerID) {
		return
	}
	task, err := protocol.DecodeTask(m.Payload())
	if err != nil {
		slog.Warn(fmt.Sprintf("ignored a bad message on %s: %v", m.Topic(), err))
		return
	}
	if task.WorkerID != r.workerID {
		slog.Warn("ignored a task addressed to " + task.WorkerID)
		return
	}
	r.queue.put(task)
}

// takePresence keeps what a master presence says; true when it comes from a master not seen before (a new
// timestamp), which must learn about this worker. A presence with a lower epoch than one already seen (a
// deposed leader's, or its Last Will) is ignored entirely; one without an epoch (a single master) is read
// as always.
func (r *Runner) takePresence(p *protocol.Presence) bool {
	r.mutex.Lock()
	defer r.mutex.Unlock()
	if p.Epoch != nil {
		if r.masterEpoch != nil && *p.Epoch < *r.masterEpoch {
			slog.Info(fmt.Sprintf("ignored the %s presence of a deposed master (epoch %d < %d)", p.Status, *p.Epoch,
				*r.masterEpoch))
			return false
		}
		r.masterEpoch = p.Epoch
	}
	fresh := p.Status == "online" && !sameTimestamp(p.Timestamp, r.masterStarted)
	if fresh {
		r.masterStarted = p.Timestamp
		r.lean = p.Lean
	}
	return fresh
}

func sameTimestamp(a, b *int64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// publish sends without waiting for the broker's acknowledgement (a failure is logged); false once the
// goodbye is on its way.
func (r *Runner) publish(topic string, payload []byte, qos byte) bool {
	r.mutex.Lock()
	closing := r.closing
	r.mutex.Unlock()
	if closing {
		return false
	}
	r.publishNow(topic, payload, qos)
	return true
}

func (r *Runner) publishNow(topic string, payload []byte, qos byte) mqtt.Token {
	token := r.client.Publish(topic, qos, false, payload)
	go func() {
		if !token.WaitTimeout(publishTimeout) {
			slog.Warn("could not publish on " + topic + ": no acknowledgement in time")
		} else if err := token.Error(); err != nil && qos > 0 {
			slog.Warn(fmt.Sprintf("could not publish on %s: %v", topic, err))
		}
	}()
	return token
}

func (r *Runner) statusMessage(status string, task *protocol.Task) []byte {
	now := protocol.NowMS()
	msg := protocol.Status{WorkerID: r.workerID, Status: status, Timestamp: &now}
	if task != nil {
		msg.TaskID, msg.Attempt = task.TaskID, task.Attempt
	}
	return protocol.Encode(msg)
}

func (r *Runner) publishStatus(status string, task *protocol.Task) {
	r.publish(r.topics.Status(), r.statusMessage(status, task), 1)
}

func (r *Runner) logLine(text string) {
	slog.Info(text)
	r.publish(r.topics.Logs(), protocol.Encode(protocol.Log{Timestamp: protocol.NowMS(), Source: r.workerID, Message: text}), 0)
}

// taskLine is a routine line about one task: on the log topic only when the master wants those.
func (r *Runner) taskLine(text string) {
	r.mutex.Lock()
	lean := r.lean
	r.mutex.Unlock()
	if lean {
		slog.Info(text)
		return
	}
	r.logLine(text)
}

// work takes tasks one at a time; the model and the simulated work run here, never on paho's goroutines.
func (r *Runner) work(ctx context.Context) {
	defer close(r.workDone)
	for {
		task, ok := r.queue.get(ctx)
		if !ok {
			return
		}
		r.mutex.Lock()
		r.busy, r.current = true, task
		lean := r.lean // for the whole task: a presence arriving meanwhile changes the next one
		r.mutex.Unlock()
		if !lean {
			r.publishStatus("busy", task)
		}
		ack := r.process(ctx, task)
		r.mutex.Lock()
		r.busy = false
		r.mutex.Unlock()
		// Even with the next task already here, and also when stopped mid-task (no result then): "idle with
		// task X" says X is finished, and a stopped worker gives X back at once. A lean master knows it from
		// the accepted result, and needs it only when the result did not get through.
		if !lean || ack == nil || !ack.GetSuccess() {
			r.publishStatus("idle", task)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Process answers one task and reports it; returns the master's acknowledgement, if any.
func (r *Runner) process(ctx context.Context, task *protocol.Task) *pb.ResultAck {
	label := deref(task.TaskID)
	if label == "" {
		label = task.SessionID
	}
	if utf8.RuneCountInString(label) > 8 {
		label = string([]rune(label)[:8])
	}
	attempt := deref(task.Attempt)
	shownAttempt := attempt
	if shownAttempt == 0 {
		shownAttempt = 1
	}
	r.taskLine(fmt.Sprintf("task %s started (attempt %d)", label, shownAttempt))
	startedWall, started := protocol.NowMS(), time.Now()
	r.sender.Prepare(task.GRPCEndpoint)
	var text, errText, modelName string
	var modelMS int64
	answer, err := r.model.Answer(ctx, task.Query, task.APIKey, deref(task.Model))
	if err == nil {
		text, modelName, modelMS = answer.Text, answer.Model, answer.ElapsedMS
		err = sleepAtLeast(ctx, time.Duration(r.settings.WorkSeconds*float64(time.Second))) // the simulated long processing
	}
	var modelErr *models.Error
	switch {
	case ctx.Err() != nil:
		return nil // stopping: the task goes back to the master with our "idle"
	case errors.As(err, &modelErr):
		errText = modelErr.Message
	case err != nil:
		errText = "the model call failed"
		slog.Error(fmt.Sprintf("unexpected error on task %s: %v", label, err))
	}
	processingMS := int64(math.RoundToEven(float64(time.Since(started)) / float64(time.Millisecond)))
	result := &pb.TaskResult{
		WorkerId:            r.workerID,
		SessionId:           task.SessionID,
		OriginalQuery:       task.Query,
		AiResponse:          text,
		ApiKey:              "", // keys are never echoed
		ProcessingTimeMs:    processingMS,
		QueryTimestamp:      task.Timestamp,
		CompletionTimestamp: protocol.NowMS(),
		TaskId:              deref(task.TaskID),
		Attempt:             int32(attempt),
		Token:               deref(task.Token),
		Error:               errText,
		Model:               modelName,
		StartedTimestamp:    startedWall,
		ModelTimeMs:         modelMS,
	}
	ack, err := r.sender.Send(ctx, task.GRPCEndpoint, result)
	if err != nil {
		if ctx.Err() == nil {
			r.logLine(fmt.Sprintf("task %s: %v", label, err))
		}
		return nil
	}
	if ack.GetSuccess() {
		outcome := "done"
		if errText != "" {
			outcome = "failed"
		}
		r.taskLine(fmt.Sprintf("task %s %s in %d ms", label, outcome, processingMS))
	} else {
		r.logLine(fmt.Sprintf("task %s result refused by the master: %s", label, ack.GetMessage()))
	}
	return ack
}

// sleepAtLeast sleeps d by the monotonic clock, never less, unless ctx ends.
func sleepAtLeast(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for left := d; left > 0; left = time.Until(deadline) {
		if err := models.Sleep(ctx, left); err != nil {
			return err
		}
	}
	return nil
}

// Stop says goodbye before a clean shutdown (a clean disconnect does not fire the Last Will): stop
// working first (a task in progress reports "idle" without a result, so the master gives it to another
// worker at once), then the goodbye, then nothing more.
func (r *Runner) Stop(timeout time.Duration) {
	r.workCancel()
	select {
	case <-r.workDone:
	case <-time.After(timeout / 2):
		slog.Warn("the task in progress did not stop in time")
	}
	r.mutex.Lock()
	r.closing = true
	r.mutex.Unlock()
	if r.client.IsConnectionOpen() {
		token := r.publishNow(r.topics.Status(), r.statusMessage("offline", nil), 1)
		if !token.WaitTimeout(timeout/2) || token.Error() != nil {
			slog.Warn(fmt.Sprintf("could not announce going offline: %v", token.Error()))
		}
	}
	r.registered.Store(false)
	r.client.Disconnect(250)
	r.sender.Close()
}

// queue is an unbounded FIFO of tasks.
type queue struct {
	mutex  sync.Mutex
	items  []*protocol.Task
	signal chan struct{}
}

func newQueue() *queue { return &queue{signal: make(chan struct{}, 1)} }

func (q *queue) put(t *protocol.Task) {
	q.mutex.Lock()
	q.items = append(q.items, t)
	q.mutex.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *queue) get(ctx context.Context) (*protocol.Task, bool) {
	for {
		q.mutex.Lock()
		if len(q.items) > 0 {
			t := q.items[0]
			q.items = q.items[1:]
			q.mutex.Unlock()
			return t, true
		}
		q.mutex.Unlock()
		select {
		case <-q.signal:
		case <-ctx.Done():
			return nil, false
		}
	}
}
