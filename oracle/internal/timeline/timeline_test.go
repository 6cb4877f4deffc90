package timeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRecordsAreTheEmulatorsFields(t *testing.T) {
	var out bytes.Buffer
	r := NewRecorder(&out, float64(time.Now().Add(-10*time.Second).UnixNano())/1e9)
	r.Request("apiserver-0", "get", 0.25, Cluster, "127.0.0.1:2379")
	r.Request("apiserver-0", "create", 0.001, NoError, "")
	r.Health("apiserver-0", true)
	r.Event("apiserver-0", TransportState, "127.0.0.1:2379 READY ch1")
	r.Leader("kube-scheduler", "candidate-0", true)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []map[string]any{
		{"type": "Request", "component": "apiserver-0", "op": "get", "latency": 0.25,
			"error": "cluster", "source": "etcd", "member": "127.0.0.1:2379"},
		{"type": "Request", "component": "apiserver-0", "op": "create", "latency": 0.001,
			"error": nil, "source": "etcd", "member": nil},
		{"type": "Health", "component": "apiserver-0", "healthy": true},
		{"type": "Event", "component": "apiserver-0", "kind": "transport_state",
			"detail": "127.0.0.1:2379 READY ch1"},
		{"type": "LeaderChange", "lease": "kube-scheduler", "candidate": "candidate-0", "leading": true},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v", i, err)
		}
		ts, ok := got["t"].(float64)
		if !ok || ts < 9.9 || ts > 11 {
			t.Errorf("line %d: t = %v, want about 10 s after the start epoch", i, got["t"])
		}
		delete(got, "t")
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("line %d:\n got %v\nwant %v", i, got, want[i])
		}
	}
}

func TestNothingIsWrittenAfterFinish(t *testing.T) {
	var out bytes.Buffer
	r := NewRecorder(&out, 0)
	r.Leader("l", "c", true)
	if err := r.Finish(); err != nil {
		t.Fatal(err)
	}
	r.Leader("l", "c", false)
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("%d records written, want 1", n)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want ErrorClass
	}{
		{nil, NoError},
		{context.DeadlineExceeded, Context},
		{fmt.Errorf("error getting data from etcd: %w", context.Canceled), Context},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), Context},
		{status.Error(codes.Canceled, "context canceled"), Context},
		{status.Error(codes.Unavailable, "connection refused"), Cluster},
		{rpctypes.ErrNoLeader, Cluster},
		{rpctypes.ErrTimeout, Cluster},
		{rpctypes.ErrCompacted, Response},
		{status.Error(codes.InvalidArgument, "bad"), Response},
		{rpctypes.ErrLeaseNotFound, Response},
		{errors.New("decoding failed"), Other},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
