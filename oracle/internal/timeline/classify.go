package timeline

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Classify sorts an etcd client error into the analysis's classes the way
// emulator/client/errors.py (from_rpc_error) and the apiserver emulation's
// error_class do: CANCELLED and DEADLINE_EXCEEDED (or the context's own
// error) are context; UNAVAILABLE is cluster (the etcd client already retried
// what it retries); any other gRPC status is response; the rest is other.
// nil is NoError.
func Classify(err error) ErrorClass {
	if err == nil {
		return NoError
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Context
	}
	code, ok := grpcCode(err)
	if !ok {
		return Other
	}
	switch code {
	case codes.Canceled, codes.DeadlineExceeded:
		return Context
	case codes.Unavailable:
		return Cluster
	case codes.OK:
		return Other
	default:
		return Response
	}
}

// grpcCode finds the gRPC status code in err's chain: the etcd client turns
// server errors into rpctypes.EtcdError (which keeps the code), others stay
// gRPC statuses.
func grpcCode(err error) (codes.Code, bool) {
	var etcdErr rpctypes.EtcdError
	if errors.As(err, &etcdErr) {
		return etcdErr.Code(), true
	}
	if s, ok := status.FromError(err); ok {
		return s.Code(), true
	}
	return codes.Unknown, false
}
