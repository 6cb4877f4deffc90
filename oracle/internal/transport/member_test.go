package transport

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

func TestMemberIsFilledFromTheServerAddressAttributes(t *testing.T) {
	m := &Member{}
	ctx, span := MemberTracing().Tracer("otelgrpc").Start(WithMember(context.Background(), m), "etcdserverpb.KV/Range")
	if !span.IsRecording() {
		t.Fatal("a request with a Member needs a recording span, or otelgrpc sets no attributes")
	}
	if trace.SpanFromContext(ctx) != span {
		t.Fatal("the span must be in the returned context: otelgrpc finds it there")
	}
	if span.SpanContext().IsValid() {
		t.Fatal("a valid span context would be propagated on the wire")
	}
	span.SetAttributes(attribute.String("rpc.method", "Range"))
	if m.String() != "" {
		t.Fatalf("member %q before the address is known", m.String())
	}
	span.SetAttributes(attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 23790))
	if got := m.String(); got != "127.0.0.1:23790" {
		t.Fatalf("member = %q", got)
	}
	// A retry on another member: the last attempt wins.
	_, retry := MemberTracing().Tracer("otelgrpc").Start(WithMember(context.Background(), m), "etcdserverpb.KV/Range")
	retry.SetAttributes(attribute.String("server.address", "::1"), attribute.Int("server.port", 2379))
	if got := m.String(); got != "[::1]:2379" {
		t.Fatalf("member after retry = %q", got)
	}
}

func TestRequestsWithoutAMemberGetNoRecordingSpan(t *testing.T) {
	_, span := MemberTracing().Tracer("otelgrpc").Start(context.Background(), "etcdserverpb.Watch/Watch")
	if span.IsRecording() {
		t.Fatal("spans without a Member should cost nothing")
	}
}
