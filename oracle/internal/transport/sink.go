package transport

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/connectivity"

	"etcdlab/oracle/internal/timeline"
)

// RecorderSink writes what the observer sees as timeline Events:
//
//	transport_state    "<endpoint> <STATE> <client>" (+ ": <dial error>" on TRANSIENT_FAILURE)
//	keepalive_failure  "<endpoint> <client>" ("" when no connection could be paired)
//
// Component maps a client label to the record's component (nil: the label).
type RecorderSink struct {
	Rec       *timeline.Recorder
	Component func(client string) string
}

func (s RecorderSink) component(client string) string {
	if s.Component == nil || client == "" {
		return client
	}
	return s.Component(client)
}

// State implements Sink.
func (s RecorderSink) State(client, endpoint string, state connectivity.State, err error) {
	detail := fmt.Sprintf("%s %s %s", endpoint, strings.ToUpper(state.String()), client)
	if err != nil && state == connectivity.TransientFailure {
		detail += ": " + err.Error()
	}
	s.Rec.Event(s.component(client), timeline.TransportState, detail)
}

// KeepaliveClosed implements Sink.
func (s RecorderSink) KeepaliveClosed(client, endpoint string) {
	detail := ""
	if endpoint != "" {
		detail = endpoint + " " + client
	}
	s.Rec.Event(s.component(client), timeline.KeepaliveFailure, detail)
}
