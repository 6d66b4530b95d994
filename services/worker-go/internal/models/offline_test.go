package models

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"testing"
)

// testdata/offline_vectors.jsonl holds [query, answer] pairs computed by the Python worker:
//
//	.venv/bin/python -c 'from services.worker.models import OfflineModel; print(OfflineModel.text_for(q))'
//
// (whitespace of every kind, emoji and combining sequences at the 200-character cut, empty questions).
func TestOfflineTextMatchesPython(t *testing.T) {
	f, err := os.Open("testdata/offline_vectors.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for scanner.Scan() {
		var pair [2]string
		if err := json.Unmarshal(scanner.Bytes(), &pair); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		if got := OfflineText(pair[0]); got != pair[1] {
			t.Errorf("OfflineText(%q)\n got %q\nwant %q", pair[0], got, pair[1])
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d vectors", n)
	}
}

func TestOfflineAnswer(t *testing.T) {
	a, err := NewOffline(0, 0).Answer(context.Background(), "hi", "key", "m")
	if err != nil || a.Model != OfflineModelName || a.Text != OfflineText("hi") {
		t.Fatalf("got %+v, %v", a, err)
	}
}

func TestOfflineLatencyLognormal(t *testing.T) {
	o := NewOffline(50, 20)
	sum := 0.0
	const n = 20000
	for i := 0; i < n; i++ {
		v := o.SampleLatencyMS()
		if v <= 0 {
			t.Fatalf("latency %v <= 0", v)
		}
		sum += v
	}
	if mean := sum / n; mean < 48 || mean > 52 {
		t.Fatalf("mean %v, want about 50", mean)
	}
	if v := NewOffline(7, 0).SampleLatencyMS(); v != 7 {
		t.Fatalf("fixed latency %v", v)
	}
}

func TestRouter(t *testing.T) {
	gem := &Gemini{}
	made := 0
	mk := func() Model { made++; return gem }
	off := NewOffline(0, 0)
	cases := []struct {
		mode, configured, task string
		model                  Model
		key                    string
	}{
		{"offline", "k", "t", off, ""},
		{"auto", "", "", off, ""},
		{"auto", "", " t ", gem, "t"},
		{"auto", "k", "", gem, "k"},
		{"auto", "k", "t", gem, "t"}, // the task's key wins
		{"gemini", "", "", gem, ""},
		{"gemini", "k", "", gem, "k"},
	}
	for _, c := range cases {
		m, key := NewRouter(c.mode, mk, off, c.configured).Choose(c.task)
		if m != c.model || key != c.key {
			t.Errorf("%+v: got %T %q", c, m, key)
		}
	}
	_, err := NewRouter("gemini", func() Model { return NewGemini("m", "http://127.0.0.1:1", 1e9) }, off, "").
		Answer(context.Background(), "q", "", "")
	if e, ok := err.(*Error); !ok || e.Message != NoKeyMessage || e.Kind != "auth" {
		t.Fatalf("gemini mode without a key: %v", err)
	}
}
