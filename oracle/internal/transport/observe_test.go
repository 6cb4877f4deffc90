package transport

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/connectivity"
)

type fakeSink struct {
	mu        sync.Mutex
	keepalive []string
}

func (s *fakeSink) State(string, string, connectivity.State, error) {}

func (s *fakeSink) KeepaliveClosed(client, endpoint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepalive = append(s.keepalive, client+"@"+endpoint)
}

func (s *fakeSink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keepalive...)
}

// What grpc-go's client transport logs when a keepalive ping goes unanswered.
const closing = `[client-transport 0xc000123456] Closing: connection error: desc = "keepalive ping failed to receive ACK within timeout"`

func TestKeepaliveCloseIsPairedWithTheConnectionThatLeftReady(t *testing.T) {
	sink := &fakeSink{}
	log := &keepaliveLogger{k: &keepaliveWatch{sink: sink}}
	log.Infoln(closing)
	// The same reason quoted by another component is not a second close.
	log.Infoln(`[core] addrConn: transport closed: keepalive ping failed to receive ACK within timeout`)
	log.k.left("pods", "127.0.0.1:2379")
	log.k.left("nodes", "127.0.0.1:2380") // an ordinary close: nothing pending
	if got := sink.got(); len(got) != 1 || got[0] != "pods@127.0.0.1:2379" {
		t.Fatalf("keepalive closes = %v", got)
	}
}

func TestAnUnpairedKeepaliveCloseIsStillReported(t *testing.T) {
	sink := &fakeSink{}
	log := &keepaliveLogger{k: &keepaliveWatch{sink: sink}}
	log.Infof("%s", closing)
	time.Sleep(keepalivePairing + 200*time.Millisecond)
	if got := sink.got(); len(got) != 1 || got[0] != "@" {
		t.Fatalf("keepalive closes = %v", got)
	}
	log.k.left("pods", "127.0.0.1:2379")
	if got := sink.got(); len(got) != 1 {
		t.Fatalf("a later close was paired with a reported one: %v", got)
	}
}

func TestOtherLogLinesAreIgnored(t *testing.T) {
	sink := &fakeSink{}
	log := &keepaliveLogger{k: &keepaliveWatch{sink: sink}}
	log.Infoln("[client-transport 0xc0] Closing: connection error: desc = \"error reading from server: EOF\"")
	log.Warningf("[core] grpc: addrConn.createTransport failed to connect to %s", "127.0.0.1:2379")
	log.k.left("pods", "127.0.0.1:2379")
	if !log.V(2) || log.V(3) {
		t.Error("verbosity 2 must be on (the close is logged there) and no more")
	}
	if got := sink.got(); len(got) != 0 {
		t.Fatalf("keepalive closes = %v", got)
	}
}
