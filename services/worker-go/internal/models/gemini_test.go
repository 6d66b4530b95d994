package models

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeGemini answers like tests/fakes/gemini.py: the key picks the behaviour.
func fakeGemini(t *testing.T, slow time.Duration) (*httptest.Server, *[]string) {
	t.Helper()
	var seen []string
	errorBody := func(w http.ResponseWriter, code int, status, message string, details ...map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		body := map[string]any{"code": code, "status": status, "message": message}
		if details != nil {
			body["details"] = details
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.String())
		if !strings.HasSuffix(r.URL.Path, ":generateContent") {
			errorBody(w, 404, "NOT_FOUND", "Method not found")
			return
		}
		var req struct {
			Contents []struct {
				Parts []struct{ Text string } `json:"parts"`
			} `json:"contents"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		query := req.Contents[len(req.Contents)-1].Parts[0].Text
		model := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path[strings.Index(r.URL.Path, "/models/"):], "/models/"), ":generateContent")
		key := r.Header.Get("x-goog-api-key")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case key == "":
			errorBody(w, 403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
		case key == "fake-quota":
			errorBody(w, 429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.")
		case key == "fake-bad":
			errorBody(w, 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
				map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"})
		case key == "fake-5xx":
			errorBody(w, 503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
		case key == "fake-500":
			errorBody(w, 500, "INTERNAL", "boom")
		case key == "fake-nomodel":
			errorBody(w, 404, "NOT_FOUND", "models/"+model+" is not found")
		case key == "fake-badrequest":
			errorBody(w, 400, "INVALID_ARGUMENT", "Request contains an invalid argument: fake-badrequest \n\n too long")
		case key == "fake-blocked":
			_, _ = w.Write([]byte(`{"promptFeedback": {"blockReason": "SAFETY"}}`))
		case key == "fake-empty":
			_, _ = w.Write([]byte(`{"candidates": [{"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0}]}`))
		case key == "fake-garbage":
			_, _ = w.Write([]byte(`{not json`))
		case key == "fake-slow":
			select {
			case <-time.After(slow):
			case <-r.Context().Done():
				return
			}
			fallthrough
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"candidates": []any{map[string]any{
				"content":      map[string]any{"role": "model", "parts": []any{map[string]any{"text": "fake-gemini answer to: " + query}}},
				"finishReason": "STOP"}}})
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestGeminiAnswers(t *testing.T) {
	srv, seen := fakeGemini(t, 0)
	g := NewGemini("gemini-flash-latest", srv.URL, 5*time.Second)
	a, err := g.Answer(context.Background(), "why?", "sk-good-1", "")
	if err != nil || a.Text != "fake-gemini answer to: why?" || a.Model != "gemini-flash-latest" {
		t.Fatalf("got %+v, %v", a, err)
	}
	a, err = g.Answer(context.Background(), "why?", "sk-good-1", "gemini-other")
	if err != nil || a.Model != "gemini-other" || !strings.Contains((*seen)[1], "/models/gemini-other:") {
		t.Fatalf("task's model: %+v, %v, %v", a, err, *seen)
	}
	for _, u := range *seen {
		if strings.Contains(u, "sk-good") {
			t.Fatalf("the key went into the URL: %s", u)
		}
	}
}

func TestGeminiErrorsAreReadable(t *testing.T) {
	srv, _ := fakeGemini(t, 10*time.Second)
	g := NewGemini("gemini-flash-latest", srv.URL, 300*time.Millisecond)
	cases := map[string]struct{ message, kind string }{
		"fake-quota":      {"Gemini quota exceeded (429): try again later or use your own API key", "quota"},
		"fake-bad":        {"Gemini rejected the API key (400)", "auth"},
		"fake-5xx":        {"Gemini is unavailable (503): try again later", "unavailable"},
		"fake-500":        {"Gemini is unavailable (500): try again later", "unavailable"},
		"fake-nomodel":    {"Gemini does not offer the model 'gemini-flash-latest' (404)", "bad_request"},
		"fake-badrequest": {"Gemini rejected the request (400): Request contains an invalid argument: [redacted] too long", "bad_request"},
		"fake-blocked":    {"Gemini refused to answer this question (blocked: SAFETY)", "bad_request"},
		"fake-empty":      {"Gemini returned an empty answer (finish reason: SAFETY)", "other"},
		"fake-slow":       {"Gemini did not answer within 0.3 s", "timeout"},
	}
	for key, want := range cases {
		start := time.Now()
		_, err := g.Answer(context.Background(), "q", key, "")
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: not a model error: %v", key, err)
			continue
		}
		if e.Message != want.message || e.Kind != want.kind {
			t.Errorf("%s: got %q (%s), want %q (%s)", key, e.Message, e.Kind, want.message, want.kind)
		}
		if strings.Contains(e.Message, srv.URL) || strings.Contains(e.Message, "127.0.0.1") || strings.Contains(e.Message, "goroutine") {
			t.Errorf("%s: message leaks: %q", key, e.Message)
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("%s: took %v", key, time.Since(start))
		}
	}
	// A garbled body is still one readable line.
	_, err := g.Answer(context.Background(), "q", "fake-garbage", "")
	var e *Error
	if !errors.As(err, &e) || e.Kind != "other" || strings.Contains(e.Message, "127.0.0.1") {
		t.Errorf("garbage: %v", err)
	}
}

func TestGeminiUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = NewGemini("m", "http://"+addr, time.Second).Answer(context.Background(), "q", "secret-key", "")
	var e *Error
	if !errors.As(err, &e) || e.Message != "could not reach Gemini: try again later" || e.Kind != "unavailable" {
		t.Fatalf("got %v", err)
	}
}

func TestGeminiCancelledIsNotAModelError(t *testing.T) {
	srv, _ := fakeGemini(t, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := NewGemini("m", srv.URL, 5*time.Second).Answer(ctx, "q", "fake-slow", "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestGeminiWithoutKeyNeverReadsTheEnvironment(t *testing.T) {
	t.Setenv("GEMINI_API_KEY", "from-env")
	_, err := NewGemini("m", "http://127.0.0.1:1", time.Second).Answer(context.Background(), "q", "  ", "")
	var e *Error
	if !errors.As(err, &e) || e.Message != NoKeyMessage {
		t.Fatalf("got %v", err)
	}
}
