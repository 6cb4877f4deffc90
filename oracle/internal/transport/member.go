// Package transport watches the etcd clients' gRPC transport without changing
// it: which member served each request, how each connection's state changes,
// and when a connection is closed by a keepalive timeout.
package transport

import (
	"context"
	"net"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Member is filled with the endpoint ("host:port") that served a request.
//
// It is found through the apiserver's own tracing hook: newETCD3Client always
// installs otelgrpc's client stats handler with TransportConfig.TracerProvider,
// and that handler sets server.address and server.port on the RPC's span when
// the request's headers go out on a transport. MemberTracing is a
// TracerProvider whose spans record only those two attributes, and only for
// requests whose context carries a *Member (WithMember). Its spans have no
// valid span context, so nothing is propagated on the wire: the traffic is
// what it is with the default no-op provider.
type Member struct {
	mu   sync.Mutex
	addr string
}

// String is the endpoint of the last attempt that reached a transport ("" if none).
func (m *Member) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

func (m *Member) set(addr string) {
	m.mu.Lock()
	m.addr = addr
	m.mu.Unlock()
}

type memberKey struct{}

// WithMember returns ctx with m attached; requests made with it fill m in.
func WithMember(ctx context.Context, m *Member) context.Context {
	return context.WithValue(ctx, memberKey{}, m)
}

// MemberTracing is the TracerProvider described on Member.
func MemberTracing() trace.TracerProvider { return memberProvider{} }

type memberProvider struct{ noop.TracerProvider }

func (memberProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return memberTracer{} }

type memberTracer struct{ noop.Tracer }

func (memberTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	m, _ := ctx.Value(memberKey{}).(*Member)
	if m == nil {
		return noop.Tracer{}.Start(ctx, name, opts...)
	}
	span := &memberSpan{member: m}
	return trace.ContextWithSpan(ctx, span), span
}

type memberSpan struct {
	noop.Span
	member *Member
	mu     sync.Mutex
	host   string
	port   int64
}

func (*memberSpan) IsRecording() bool { return true }

func (s *memberSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, a := range kv {
		switch a.Key {
		case "server.address":
			s.host, changed = a.Value.AsString(), true
		case "server.port":
			s.port, changed = a.Value.AsInt64(), true
		}
	}
	if changed && s.host != "" {
		addr := s.host
		if s.port != 0 {
			addr = net.JoinHostPort(s.host, strconv.FormatInt(s.port, 10))
		}
		s.member.set(addr)
	}
}
