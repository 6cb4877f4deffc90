package transport

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/resolver"
)

// Sink receives what the observer sees.
type Sink interface {
	// State: a connection of the client labelled client to endpoint changed
	// state; err is the dial error of a TRANSIENT_FAILURE (nil otherwise).
	State(client, endpoint string, state connectivity.State, err error)
	// KeepaliveClosed: a transport was closed because a keepalive ping went
	// unanswered; client and endpoint name the connection that left READY
	// right after it (both "" if none did within a second).
	KeepaliveClosed(client, endpoint string)
}

// Observer labels the etcd clients' gRPC channels as they are built.
type Observer struct {
	mu     sync.Mutex
	label  string
	builds int
}

// Observe re-registers gRPC's round_robin balancer (the policy etcd's client
// asks for in its resolver's service config) as a wrapper that builds the
// real round_robin and only passes each subchannel's state changes to sink
// before gRPC's own listener. It also installs a grpclog logger that notices
// keepalive closes. Call it once, before any etcd client is built.
func Observe(sink Sink) *Observer {
	o := &Observer{label: "client"}
	k := &keepaliveWatch{sink: sink}
	balancer.Register(observingBuilder{inner: balancer.Get(roundrobin.Name), sink: sink, k: k, o: o})
	grpclog.SetLoggerV2(&keepaliveLogger{k: k})
	return o
}

// Label names the channels built from now on (the balancer is built when a
// client first connects, which the apiserver's constructor waits for).
func (o *Observer) Label(label string) {
	o.mu.Lock()
	o.label = label
	o.mu.Unlock()
}

// Builds counts the channels built so far.
func (o *Observer) Builds() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.builds
}

// WaitBuilds waits until at least n channels were built, or timeout passed.
func (o *Observer) WaitBuilds(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for o.Builds() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func (o *Observer) built() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.builds++
	return o.label
}

type observingBuilder struct {
	inner balancer.Builder
	sink  Sink
	k     *keepaliveWatch
	o     *Observer
}

func (b observingBuilder) Name() string { return b.inner.Name() }

func (b observingBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	label := b.o.built()
	return b.inner.Build(&observingCC{ClientConn: cc, label: label, sink: b.sink, k: b.k}, opts)
}

type observingCC struct {
	balancer.ClientConn
	label string
	sink  Sink
	k     *keepaliveWatch
}

func (c *observingCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	names := make([]string, len(addrs))
	for i, a := range addrs {
		names[i] = a.Addr
	}
	endpoint := strings.Join(names, ",")
	next := opts.StateListener
	var mu sync.Mutex
	last := connectivity.Shutdown + 1 // no state yet
	opts.StateListener = func(s balancer.SubConnState) {
		mu.Lock()
		previous := last
		last = s.ConnectivityState
		mu.Unlock()
		c.sink.State(c.label, endpoint, s.ConnectivityState, s.ConnectionError)
		if previous == connectivity.Ready && s.ConnectivityState != connectivity.Ready {
			c.k.left(c.label, endpoint)
		}
		if next != nil {
			next(s)
		}
	}
	return c.ClientConn.NewSubConn(addrs, opts)
}

// keepaliveWatch pairs grpc-go's "keepalive ping failed" close (logged by the
// transport, which does not name its address) with the connection that
// leaves READY right after it (the transport's close makes its subchannel
// IDLE within microseconds).
type keepaliveWatch struct {
	sink    Sink
	mu      sync.Mutex
	pending []*time.Timer
}

const keepalivePairing = time.Second

func (k *keepaliveWatch) closed() {
	k.mu.Lock()
	defer k.mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(keepalivePairing, func() {
		if k.take(t) {
			k.sink.KeepaliveClosed("", "")
		}
	})
	k.pending = append(k.pending, t)
}

func (k *keepaliveWatch) take(t *time.Timer) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, p := range k.pending {
		if p == t {
			k.pending = append(k.pending[:i], k.pending[i+1:]...)
			return true
		}
	}
	return false
}

func (k *keepaliveWatch) left(client, endpoint string) {
	k.mu.Lock()
	if len(k.pending) == 0 {
		k.mu.Unlock()
		return
	}
	t := k.pending[0]
	k.pending = k.pending[1:]
	k.mu.Unlock()
	t.Stop()
	k.sink.KeepaliveClosed(client, endpoint)
}

// keepaliveLogger is grpclog's LoggerV2: errors and fatals go to stderr as
// grpc-go's default logger would print them; info and warnings are only read
// for the transport's keepalive close, which grpc-go logs at verbosity 2.
type keepaliveLogger struct{ k *keepaliveWatch }

const keepaliveMessage = "keepalive ping failed to receive ACK within timeout"

// look counts the transport's own "Closing: <reason>" line (the reason is
// repeated in other components' lines, which would count it twice).
func (l *keepaliveLogger) look(args ...any) {
	text := fmt.Sprint(args...)
	if strings.Contains(text, "Closing: ") && strings.Contains(text, keepaliveMessage) {
		l.k.closed()
	}
}

func (l *keepaliveLogger) Info(args ...any)                 { l.look(args...) }
func (l *keepaliveLogger) Infoln(args ...any)               { l.look(args...) }
func (l *keepaliveLogger) Infof(format string, args ...any) { l.look(fmt.Sprintf(format, args...)) }
func (l *keepaliveLogger) Warning(args ...any)              { l.look(args...) }
func (l *keepaliveLogger) Warningln(args ...any)            { l.look(args...) }
func (l *keepaliveLogger) Warningf(format string, args ...any) {
	l.look(fmt.Sprintf(format, args...))
}
func (l *keepaliveLogger) Error(args ...any)   { stderr.Error(args...) }
func (l *keepaliveLogger) Errorln(args ...any) { stderr.Errorln(args...) }
func (l *keepaliveLogger) Errorf(format string, args ...any) {
	stderr.Errorf(format, args...)
}
func (l *keepaliveLogger) Fatal(args ...any)   { stderr.Fatal(args...) }
func (l *keepaliveLogger) Fatalln(args ...any) { stderr.Fatalln(args...) }
func (l *keepaliveLogger) Fatalf(format string, args ...any) {
	stderr.Fatalf(format, args...)
}

// V reports verbosity 2 as enabled: the transport logs its close reason there.
func (l *keepaliveLogger) V(level int) bool { return level <= 2 }
