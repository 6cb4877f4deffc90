// Package etcdclient builds an etcd client the way kube-apiserver builds its
// own, for the parts of the oracle that cannot go through the apiserver's
// storage factory (the leader election candidates, which write their Lease
// record with raw transactions like the emulator's EtcdLeaseLock).
//
// The apiserver's constructor is the unexported variable newETCD3Client in
// k8s.io/apiserver/pkg/storage/storagebackend/factory/etcd3.go; at v0.37.2 its
// settings are: the constants keepaliveTime 30 s, keepaliveTimeout 10 s and
// dialTimeout 20 s (lines 60-70); dial options chaining grpcprom's client
// metrics interceptors (lines 309-317) and otelgrpc's client stats handler
// with the transport's TracerProvider (lines 318-326); a clientv3.Config of
// DialTimeout, DialKeepAliveTime, DialKeepAliveTimeout, DialOptions,
// Endpoints, no TLS and a Logger (lines 342-350); the client made with
// go.etcd.io/etcd/client/v3/kubernetes.New (line 352); and blockUntilReady,
// which waits up to dialTimeout for the gRPC connection to be READY
// (lines 357-388). New does the same, with its own code; the factory's
// package-level zap logger becomes a caller-given one.
package etcdclient

import (
	"context"
	"fmt"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"k8s.io/component-base/tracing"
)

// The apiserver's etcd client timings (factory/etcd3.go, v0.37.2).
const (
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
	DialTimeout      = 20 * time.Second
)

// One metrics instance for the process, as the factory keeps one.
var clientMetrics = grpcprom.NewClientMetrics()

// New connects to endpoints as the apiserver does and waits, like the
// apiserver, until the gRPC connection is ready (at most DialTimeout).
func New(endpoints []string, tracer trace.TracerProvider, logger *zap.Logger) (*kubernetes.Client, error) {
	dialOptions := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(clientMetrics.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(clientMetrics.StreamClientInterceptor()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithMessageEvents(otelgrpc.ReceivedEvents, otelgrpc.SentEvents),
			otelgrpc.WithPropagators(tracing.Propagators()),
			otelgrpc.WithTracerProvider(tracer),
		)),
	}
	client, err := kubernetes.New(clientv3.Config{
		DialTimeout:          DialTimeout,
		DialKeepAliveTime:    KeepaliveTime,
		DialKeepAliveTimeout: KeepaliveTimeout,
		DialOptions:          dialOptions,
		Endpoints:            endpoints,
		Logger:               logger,
	})
	if err != nil {
		return nil, err
	}
	if err := waitReady(client, DialTimeout); err != nil {
		_ = client.Close()
		return nil, err
	}
	return client, nil
}

func waitReady(client *kubernetes.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn := client.ActiveConnection()
	if conn == nil {
		return fmt.Errorf("no grpc connection")
	}
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			conn.Connect()
		}
		if !conn.WaitForStateChange(ctx, state) {
			return fmt.Errorf("etcd grpc connection not ready: %w", ctx.Err())
		}
	}
}
