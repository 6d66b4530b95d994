package protocol

import (
	"regexp"
	"strings"
	"testing"
)

func TestWorkerID(t *testing.T) {
	id := MakeWorkerID("go")
	if !regexp.MustCompile(`^go-worker-[0-9a-f]{6}$`).MatchString(id) || !ValidWorkerID(id) {
		t.Fatalf("id %q", id)
	}
	for _, bad := range []string{"", "a/b", "a+b", "a#", strings.Repeat("x", 129), "a b"} {
		if ValidWorkerID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEncode(t *testing.T) {
	one := int64(1)
	id := "t<1>&"
	got := string(Encode(Status{WorkerID: "w", Status: "busy", Timestamp: &one, TaskID: &id, Attempt: &one}))
	if got != `{"worker_id":"w","status":"busy","timestamp":1,"task_id":"t<1>&","attempt":1}` {
		t.Fatal(got)
	}
	if got := string(Encode(Status{WorkerID: "w", Status: "offline"})); got != `{"worker_id":"w","status":"offline"}` {
		t.Fatal(got)
	}
	got = string(Encode(Register{WorkerID: "w", Language: "go", Status: "idle", Timestamp: 5, MaxTaskMS: 40000}))
	if got != `{"worker_id":"w","language":"go","status":"idle","timestamp":5,"max_task_ms":40000}` {
		t.Fatal(got)
	}
}

func TestDecodeTask(t *testing.T) {
	task, err := DecodeTask([]byte(`{"worker_id":"go-worker-1","session_id":"t1","query":"q","api_key":"",` +
		`"grpc_endpoint":"127.0.0.1:1","timestamp":5,"task_id":"t1","attempt":2,"token":"tok","extra":[1]}`))
	if err != nil || task.Query != "q" || *task.Attempt != 2 || *task.Token != "tok" || task.Model != nil {
		t.Fatalf("%+v %v", task, err)
	}
	bad := map[string]string{
		`[]`: "invalid task message: expected a JSON object, got array",
		`{`:  "invalid task message: not UTF-8 JSON",
		`{"worker_id":"w","session_id":"s","query":"q","grpc_endpoint":"e"}`:                             "invalid task message: timestamp: Field required",
		`{"worker_id":"w","session_id":"s","query":1,"grpc_endpoint":"e","timestamp":1}`:                 "invalid task message: query: Input should be a valid string",
		`{"worker_id":"w","session_id":"s","query":"q","grpc_endpoint":"e","timestamp":"1"}`:             "invalid task message: timestamp: Input should be a valid integer",
		`{"worker_id":"w","session_id":"s","query":"q","grpc_endpoint":"e","timestamp":-1}`:              "invalid task message: timestamp: Input should be greater than or equal to 0",
		`{"worker_id":"a/b","session_id":"s","query":"q","grpc_endpoint":"e","timestamp":1}`:             "invalid task message: worker_id: String should match pattern '^[A-Za-z0-9_.:-]{1,128}$'",
		`{"worker_id":"w","session_id":"s","query":"q","grpc_endpoint":"e","timestamp":1,"attempt":1.5}`: "invalid task message: attempt: Input should be a valid integer",
	}
	for raw, want := range bad {
		if _, err := DecodeTask([]byte(raw)); err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", raw, err, want)
		}
	}
}

func TestPresence(t *testing.T) {
	p, err := DecodePresence([]byte(`{"status":"online","timestamp":7,"grpc_endpoint":"x"}`))
	if err != nil || p.Status != "online" || *p.Timestamp != 7 {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := DecodePresence([]byte(`{"status":"away"}`)); err == nil {
		t.Fatal("accepted away")
	}
	if p.Lean {
		t.Fatal("lean without task_messages")
	}
	if p.Epoch != nil {
		t.Fatal("an epoch without epoch")
	}
	if p, err := DecodePresence([]byte(`{"status":"offline","epoch":12}`)); err != nil || p.Epoch == nil || *p.Epoch != 12 {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := DecodePresence([]byte(`{"status":"online","epoch":1.5}`)); err == nil || err.Error() != "invalid master presence: epoch: Input should be a valid integer" {
		t.Fatalf("a fractional epoch: %v", err)
	}
	for raw, lean := range map[string]bool{
		`{"status":"online","task_messages":false}`: true,
		`{"status":"online","task_messages":true}`:  false,
		`{"status":"online","task_messages":0}`:     false,
	} {
		if p, err := DecodePresence([]byte(raw)); err != nil || p.Lean != lean {
			t.Errorf("%s: lean %v, %v; want %v", raw, p.Lean, err, lean)
		}
	}
}

func TestRegisterSaysTaskMessagesOnlyWhenLean(t *testing.T) {
	no := false
	if got := string(Encode(Register{WorkerID: "go-worker-a", Language: "go", Status: "idle", Timestamp: 1})); strings.Contains(got, "task_messages") {
		t.Errorf("a worker sending its statuses says so: %s", got)
	}
	got := string(Encode(Register{WorkerID: "go-worker-a", Language: "go", Status: "idle", Timestamp: 1, TaskMessages: &no}))
	if !strings.Contains(got, `"task_messages":false`) {
		t.Errorf("a lean worker does not say so: %s", got)
	}
}

func TestPyRepr(t *testing.T) {
	for in, want := range map[string]string{"abc": "'abc'", "it's": `"it's"`, "a\nb": `'a\nb'`, `a'"b`: `'a\'"b'`} {
		if got := PyRepr(in); got != want {
			t.Errorf("PyRepr(%q) = %s, want %s", in, got, want)
		}
	}
}
