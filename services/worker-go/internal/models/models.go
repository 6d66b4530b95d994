// Package models answers questions: the deterministic offline model, Gemini through the official SDK, and
// the router between them (services/worker/models.py and gemini.py in Python).
package models

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/swarm-ai-lab/worker-go/internal/settings"
)

// OfflineModelName is the model name of offline answers.
const OfflineModelName = "offline"

// NoKeyMessage is the error of gemini mode without any key.
const NoKeyMessage = "no Gemini API key configured"

// Answer is a model's answer to one question.
type Answer struct {
	Text      string
	Model     string
	ElapsedMS int64
}

// Error is a failed model call; Message is fit for the user and never holds a key, a URL or a trace.
type Error struct {
	Message string
	Kind    string // quota, auth, timeout, unavailable, bad_request, other
	Status  int
}

func (e *Error) Error() string { return e.Message }

// Model answers a question. A cancelled ctx returns ctx.Err(), not an *Error.
type Model interface {
	Answer(ctx context.Context, query, apiKey, model string) (Answer, error)
}

var offlineSentences = [...]string{
	"Set a Gemini API key to get a real answer.",
	"This reply was produced without contacting any AI service.",
	"The worker is running in offline mode, so this is a placeholder answer.",
	"A real model would have something more useful to say here.",
	"Offline answers are deterministic: the same question gets the same reply.",
	"Use this mode to test the system without spending any quota.",
}

const echoChars = 200

// OfflineText is the deterministic offline answer to query, byte for byte Python's OfflineModel.text_for.
func OfflineText(query string) string {
	// " ".join(query.split()): Python's whitespace, in code points.
	echo := strings.Join(strings.FieldsFunc(query, settings.IsPySpace), " ")
	if utf8.RuneCountInString(echo) > echoChars {
		runes := []rune(echo)
		echo = strings.TrimRightFunc(string(runes[:echoChars-1]), settings.IsPySpace) + "…"
	}
	digest := sha256.Sum256([]byte(query))
	sentence := offlineSentences[binary.BigEndian.Uint64(digest[:8])%uint64(len(offlineSentences))]
	return "[offline model] You asked: " + echo + "\n" + sentence
}

// Offline is the offline model with a configurable (optionally lognormal) latency.
type Offline struct {
	MeanMS, SDMS float64
	mu, sigma    float64
	mutex        sync.Mutex
	rng          *rand.Rand
}

// NewOffline returns the offline model; sd > 0 draws latencies from lognormal(mean, sd).
func NewOffline(meanMS, sdMS float64) *Offline {
	o := &Offline{MeanMS: meanMS, SDMS: sdMS, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	if sdMS > 0 && meanMS > 0 {
		sigma2 := math.Log1p((sdMS / meanMS) * (sdMS / meanMS))
		o.mu, o.sigma = math.Log(meanMS)-sigma2/2, math.Sqrt(sigma2)
	}
	return o
}

// SampleLatencyMS draws one latency: the mean when sd is 0, else lognormal.
func (o *Offline) SampleLatencyMS() float64 {
	if o.SDMS <= 0 || o.MeanMS <= 0 {
		return o.MeanMS
	}
	o.mutex.Lock()
	defer o.mutex.Unlock()
	return math.Exp(o.mu + o.sigma*o.rng.NormFloat64())
}

// Answer answers after the simulated latency; the key and model are ignored.
func (o *Offline) Answer(ctx context.Context, query, _, _ string) (Answer, error) {
	start := time.Now()
	if delay := o.SampleLatencyMS(); delay > 0 {
		if err := Sleep(ctx, time.Duration(delay*float64(time.Millisecond))); err != nil {
			return Answer{}, err
		}
	}
	return Answer{Text: OfflineText(query), Model: OfflineModelName, ElapsedMS: RoundMS(time.Since(start))}, nil
}

// Sleep waits d, or until ctx ends (then ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RoundMS is a duration in whole milliseconds, rounded half to even (Python's round()).
func RoundMS(d time.Duration) int64 {
	return int64(math.RoundToEven(float64(d) / float64(time.Millisecond)))
}

// Router chooses Gemini or the offline model for each task by the mode and the keys at hand.
type Router struct {
	Mode          string
	Offline       Model
	makeGemini    func() Model
	gemini        Model
	once          sync.Once
	configuredKey string
}

// NewRouter returns a router; makeGemini is called on first use.
func NewRouter(mode string, makeGemini func() Model, offline Model, configuredKey string) *Router {
	return &Router{Mode: mode, Offline: offline, makeGemini: makeGemini, configuredKey: strings.TrimSpace(configuredKey)}
}

// MayUseGemini: in every mode but offline (in auto mode a user's key brings Gemini even to a worker
// without a key of its own).
func (r *Router) MayUseGemini() bool { return r.Mode != "offline" }

// Choose returns the model for a task bringing apiKey, and the key to give it: the task's own key wins
// over the worker's.
func (r *Router) Choose(apiKey string) (Model, string) {
	if r.Mode == "offline" {
		return r.Offline, ""
	}
	key := strings.TrimFunc(apiKey, settings.IsPySpace)
	if key == "" {
		key = r.configuredKey
	}
	if key == "" && r.Mode == "auto" {
		return r.Offline, ""
	}
	r.once.Do(func() { r.gemini = r.makeGemini() })
	return r.gemini, key
}

// Answer answers with the chosen model.
func (r *Router) Answer(ctx context.Context, query, apiKey, model string) (Answer, error) {
	m, key := r.Choose(apiKey)
	return m.Answer(ctx, query, key, model)
}
