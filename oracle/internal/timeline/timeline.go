// Package timeline writes the records of the Python emulator's Timeline
// (emulator/common/timeline.py) as JSON lines, so the scenario engine can merge what
// the real Go clients did with what the emulation did.
//
// One JSON object per line; "type" names the record kind (the Python dataclass:
// Request, Health, Event, LeaderChange) and every other field carries the
// dataclass field of the same name. The one addition is Request.member, the
// etcd endpoint (host:port) that served the request's last attempt, or null
// when it is not known.
//
// t is seconds since the run's origin (the --start-unix epoch), read from the
// monotonic clock so a wall-clock step does not bend the timeline.
package timeline

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// ErrorClass is the analysis's error classification (etcdlab.common.timeline.ErrorClass).
type ErrorClass string

const (
	// NoError marks a request that succeeded; written as JSON null.
	NoError ErrorClass = ""
	// Context: the caller's deadline passed or the call was cancelled.
	Context ErrorClass = "context"
	// Cluster: no endpoint could serve the call (gRPC UNAVAILABLE).
	Cluster ErrorClass = "cluster"
	// Response: the server answered with an error retrying cannot fix.
	Response ErrorClass = "response"
	// Other: fits none of the above.
	Other ErrorClass = "other"
)

// MarshalJSON writes NoError as null, like Python's None.
func (e ErrorClass) MarshalJSON() ([]byte, error) {
	if e == NoError {
		return []byte("null"), nil
	}
	return json.Marshal(string(e))
}

// Event kinds. The first five are etcdlab.common.timeline.EventKind values;
// note and the transport ones are the oracle's own (see the package README).
const (
	KeepaliveFailure = "keepalive_failure"
	RenewFailed      = "renew_failed"
	SlowPath         = "slow_path"
	AcquireFailed    = "acquire_failed"
	Relist           = "relist"
	Note             = "note"
	// TransportState: a connection (gRPC subchannel) of one of the process's
	// etcd clients changed state. Detail: "<endpoint> <STATE> ch<N>", STATE one
	// of IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN, and for
	// TRANSIENT_FAILURE the dial error after ": ". N numbers the process's
	// gRPC channels (one per etcd client) in the order they were built.
	TransportState = "transport_state"
)

// Request is one request a component made to etcd.
type Request struct {
	Type      string     `json:"type"`
	T         float64    `json:"t"`
	Component string     `json:"component"`
	Op        string     `json:"op"`
	Latency   float64    `json:"latency"`
	Error     ErrorClass `json:"error"`
	Source    string     `json:"source"`
	Member    *string    `json:"member"`
}

// Health is one verdict of a health check.
type Health struct {
	Type      string  `json:"type"`
	T         float64 `json:"t"`
	Component string  `json:"component"`
	Healthy   bool    `json:"healthy"`
}

// Event is something that happened once.
type Event struct {
	Type      string  `json:"type"`
	T         float64 `json:"t"`
	Component string  `json:"component"`
	Kind      string  `json:"kind"`
	Detail    string  `json:"detail"`
}

// LeaderChange: candidate started (leading) or stopped believing it leads lease.
type LeaderChange struct {
	Type      string  `json:"type"`
	T         float64 `json:"t"`
	Lease     string  `json:"lease"`
	Candidate string  `json:"candidate"`
	Leading   bool    `json:"leading"`
}

// Recorder stamps records with the time since the origin and writes them,
// one line each, as they happen. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	enc      *json.Encoder
	origin   time.Time
	finished bool
	err      error
}

// NewRecorder writes to w; t = 0 at the wall-clock instant startUnix
// (seconds since the Unix epoch), measured from now on the monotonic clock.
func NewRecorder(w io.Writer, startUnix float64) *Recorder {
	now := time.Now()
	ahead := float64(now.UnixNano())/1e9 - startUnix
	origin := now.Add(-time.Duration(ahead * float64(time.Second)))
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &Recorder{enc: enc, origin: origin}
}

// Now is the current time on the recorder's clock, in seconds.
func (r *Recorder) Now() float64 {
	return time.Since(r.origin).Seconds()
}

// Since is the time since start in seconds (a latency).
func Since(start time.Time) float64 {
	return time.Since(start).Seconds()
}

// Request records a request that finished now.
func (r *Recorder) Request(component, op string, latency float64, class ErrorClass, member string) {
	rec := Request{Type: "Request", T: r.Now(), Component: component, Op: op,
		Latency: latency, Error: class, Source: "etcd"}
	if member != "" {
		rec.Member = &member
	}
	r.write(rec)
}

// Health records a health verdict.
func (r *Recorder) Health(component string, healthy bool) {
	r.write(Health{Type: "Health", T: r.Now(), Component: component, Healthy: healthy})
}

// Event records an event.
func (r *Recorder) Event(component, kind, detail string) {
	r.write(Event{Type: "Event", T: r.Now(), Component: component, Kind: kind, Detail: detail})
}

// Leader records a change of a candidate's belief that it leads a lease.
func (r *Recorder) Leader(lease, candidate string, leading bool) {
	r.write(LeaderChange{Type: "LeaderChange", T: r.Now(), Lease: lease, Candidate: candidate, Leading: leading})
}

// Finish ends the run: later records are dropped (shutting down is not part
// of what was measured, as in the Python Recorder). It returns the first
// write error, if any.
func (r *Recorder) Finish() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = true
	return r.err
}

func (r *Recorder) write(record any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished || r.err != nil {
		return
	}
	r.err = r.enc.Encode(record)
}
