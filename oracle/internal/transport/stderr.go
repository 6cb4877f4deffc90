package transport

import (
	"io"
	"os"

	"google.golang.org/grpc/grpclog"
)

// stderr prints grpc-go's errors as its default logger does.
var stderr = grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr)
