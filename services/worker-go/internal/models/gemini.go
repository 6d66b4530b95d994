package models

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/genai"

	"github.com/swarm-ai-lab/worker-go/internal/protocol"
	"github.com/swarm-ai-lab/worker-go/internal/settings"
)

// Substrings (lower case) that mark a 400/403 as being about the key rather than the request.
var keyMarkers = []string{"api key", "api_key", "apikey", "unregistered callers", "credential"}

const (
	detailChars     = 300
	clientCacheSize = 32
)

// Gemini answers with Gemini through google.golang.org/genai, every failure mapped to an *Error.
type Gemini struct {
	DefaultModel string
	BaseURL      string
	Timeout      time.Duration
	http         *http.Client
	mutex        sync.Mutex
	clients      map[[32]byte]*genai.Client // by a digest of the key, never the key itself
	order        [][32]byte
}

// NewGemini returns the Gemini model; timeout must be > 0.
func NewGemini(defaultModel, baseURL string, timeout time.Duration) *Gemini {
	return &Gemini{
		DefaultModel: defaultModel,
		BaseURL:      baseURL,
		Timeout:      timeout,
		// One connection pool for every key's client.
		http:    &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		clients: map[[32]byte]*genai.Client{},
	}
}

func (g *Gemini) client(key string) (*genai.Client, error) {
	digest := sha256.Sum256([]byte(key))
	g.mutex.Lock()
	defer g.mutex.Unlock()
	if c, ok := g.clients[digest]; ok {
		return c, nil
	}
	// The SDK's timeout is in whole milliseconds; no RetryOptions: no retries.
	timeout := time.Duration(math.Max(1, math.Ceil(float64(g.Timeout)/float64(time.Millisecond)))) * time.Millisecond
	c, err := genai.NewClient(context.Background(), &genai.ClientConfig{
		APIKey:     key, // always given: with an empty key the SDK reads GEMINI_API_KEY/GOOGLE_API_KEY itself
		Backend:    genai.BackendGeminiAPI,
		HTTPClient: g.http,
		HTTPOptions: genai.HTTPOptions{
			BaseURL: g.BaseURL,
			Timeout: &timeout,
		},
	})
	if err != nil {
		return nil, err
	}
	g.clients[digest] = c
	g.order = append(g.order, digest)
	for len(g.order) > clientCacheSize { // Go clients hold nothing to close: forget the oldest
		delete(g.clients, g.order[0])
		g.order = g.order[1:]
	}
	return c, nil
}

// Answer asks Gemini query with apiKey; a failure is an *Error, a cancelled ctx is ctx.Err().
func (g *Gemini) Answer(ctx context.Context, query, apiKey, model string) (Answer, error) {
	key := strings.TrimFunc(apiKey, settings.IsPySpace)
	if key == "" {
		return Answer{}, &Error{Message: NoKeyMessage, Kind: "auth"}
	}
	modelName := model
	if modelName == "" {
		modelName = g.DefaultModel
	}
	client, err := g.client(key)
	if err != nil {
		return Answer{}, logged(&Error{Message: fmt.Sprintf("Gemini call failed (%T)", err), Kind: "other"}, err, key)
	}
	start := time.Now()
	// A belt over the SDK's own timeout, with a little slack so the SDK's fires first.
	callCtx, cancel := context.WithTimeout(ctx, g.Timeout+500*time.Millisecond)
	defer cancel()
	response, err := client.Models.GenerateContent(callCtx, modelName, genai.Text(query), nil)
	if err == nil {
		text, terr := answerText(response)
		if terr != nil {
			return Answer{}, terr
		}
		return Answer{Text: text, Model: modelName, ElapsedMS: RoundMS(time.Since(start))}, nil
	}
	if ctx.Err() != nil { // stopping: not the model's fault, nothing to report to the user
		return Answer{}, ctx.Err()
	}
	return Answer{}, logged(g.MapError(err, modelName, key), err, key)
}

// MapError turns any SDK or transport failure into a readable *Error without key, URL or trace.
func (g *Gemini) MapError(err error, model, key string) *Error {
	var apiErr genai.APIError
	var apiErrPtr *genai.APIError
	switch {
	case errors.As(err, &apiErr):
		return mapAPIError(apiErr, model, key)
	case errors.As(err, &apiErrPtr) && apiErrPtr != nil:
		return mapAPIError(*apiErrPtr, model, key)
	case isTimeout(err):
		return &Error{Message: fmt.Sprintf("Gemini did not answer within %s s", settings.FormatG(g.Timeout.Seconds())), Kind: "timeout"}
	case isNetwork(err):
		return &Error{Message: "could not reach Gemini: try again later", Kind: "unavailable"}
	}
	return &Error{Message: fmt.Sprintf("Gemini call failed (%s)", typeName(err)), Kind: "other"}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isNetwork(err error) bool {
	var ue *url.Error
	var oe *net.OpError
	return errors.As(err, &ue) || errors.As(err, &oe)
}

func typeName(err error) string {
	name := fmt.Sprintf("%T", err)
	if i := strings.LastIndex(name, "."); i >= 0 {
		name = name[i+1:]
	}
	return strings.TrimLeft(name, "*")
}

func isKeyProblem(e genai.APIError) bool {
	if e.Code == 401 || e.Status == "UNAUTHENTICATED" || e.Status == "PERMISSION_DENIED" {
		return true
	}
	haystack := strings.ToLower(e.Message + " " + fmt.Sprint(e.Details))
	for _, m := range keyMarkers {
		if strings.Contains(haystack, m) {
			return true
		}
	}
	return false
}

func mapAPIError(e genai.APIError, model, key string) *Error {
	code := e.Code
	said := e.Message
	if said == "" {
		said = e.Status
	}
	said = short(redact(said, key))
	switch {
	case code == 429:
		return &Error{"Gemini quota exceeded (429): try again later or use your own API key", "quota", code}
	case (code == 400 || code == 401 || code == 403) && isKeyProblem(e):
		return &Error{fmt.Sprintf("Gemini rejected the API key (%d)", code), "auth", code}
	case code == 404:
		return &Error{fmt.Sprintf("Gemini does not offer the model %s (404)", protocol.PyRepr(model)), "bad_request", code}
	case code == 408 || code == 504:
		return &Error{fmt.Sprintf("Gemini timed out (%d): try again later", code), "timeout", code}
	case code >= 500 && code < 600:
		return &Error{fmt.Sprintf("Gemini is unavailable (%d): try again later", code), "unavailable", code}
	case code >= 400 && code < 500:
		suffix := ""
		if said != "" {
			suffix = ": " + said
		}
		return &Error{fmt.Sprintf("Gemini rejected the request (%d)%s", code, suffix), "bad_request", code}
	}
	return &Error{fmt.Sprintf("Gemini answered with an unexpected status (%d)", code), "other", code}
}

// answerText returns the response's text, or an *Error when Gemini gave none (e.g. a safety block).
func answerText(r *genai.GenerateContentResponse) (string, error) {
	text := r.Text()
	if strings.TrimFunc(text, settings.IsPySpace) != "" {
		return text, nil
	}
	if r.PromptFeedback != nil && r.PromptFeedback.BlockReason != "" {
		return "", &Error{Message: fmt.Sprintf("Gemini refused to answer this question (blocked: %s)", r.PromptFeedback.BlockReason), Kind: "bad_request"}
	}
	reason := "unknown"
	if len(r.Candidates) > 0 && r.Candidates[0] != nil && r.Candidates[0].FinishReason != "" {
		reason = string(r.Candidates[0].FinishReason)
	}
	return "", &Error{Message: fmt.Sprintf("Gemini returned an empty answer (finish reason: %s)", reason), Kind: "other"}
}

func redact(text, secret string) string {
	if secret == "" {
		return text
	}
	return strings.ReplaceAll(text, secret, "[redacted]")
}

func short(text string) string {
	text = strings.Join(strings.FieldsFunc(text, settings.IsPySpace), " ")
	if utf8.RuneCountInString(text) <= detailChars {
		return text
	}
	return string([]rune(text)[:detailChars-1]) + "…"
}

// logged logs a failed call without the key (and without the request URL) and returns e.
func logged(e *Error, cause error, key string) *Error {
	detail := cause.Error()
	var ue *url.Error
	if errors.As(cause, &ue) { // "Post \"https://...\": ..." names the URL: keep the reason only
		detail = ue.Op + ": " + ue.Err.Error()
	}
	slog.Warn(fmt.Sprintf("Gemini call failed: kind=%s status=%d cause=%s: %s", e.Kind, e.Status, typeName(cause), short(redact(detail, key))))
	return e
}
