// Package elect runs client-go's LeaderElector, unchanged, for several
// candidates over the etcd-backed Lease lock, and records what they believe
// and what their lock requests did.
package elect

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/leaderelection"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"

	"etcdlab/oracle/internal/etcdclient"
	"etcdlab/oracle/internal/leaselock"
	"etcdlab/oracle/internal/timeline"
	"etcdlab/oracle/internal/transport"
)

// Config of one elect run. Durations are client-go's LeaderElectionConfig's.
type Config struct {
	Endpoints  []string
	Leases     []string // lease names; each is contested by Candidates candidates
	Namespace  string
	Candidates int
	FirstIndex int // candidate identities are <lease>-<FirstIndex+i>

	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// RequestTimeout bounds each Get/Create/Update of the lock; 0 means
	// client-go's Lease lock timeout, max(1 s, RenewDeadline/2).
	RequestTimeout time.Duration
	// RestartDelay: a candidate whose elector returned (it lost the lease)
	// starts a new one after this long, like a kube-controller-manager that
	// exits and is restarted (the emulated plane's restart_delay).
	RestartDelay time.Duration
	// SharedClients: 0 gives each candidate its own etcd client. N > 0 gives
	// N clients, candidate <lease>-<k> writing through client k mod N, the
	// way every Lease write reaching one kube-apiserver goes through that
	// apiserver's one client for the leases resource (and the emulated
	// plane's candidate k through apiserver k mod N). It matters under
	// faults: a candidate with its own round-robin client never sends two
	// calls in a row to the same member, one sharing a client can.
	SharedClients int
}

// Defaults are client-go's documented defaults (as in kube-controller-manager
// and kube-scheduler) and the emulator's names.
func Defaults() Config {
	return Config{
		Leases:        []string{"etcdlab-controller"},
		Namespace:     "kube-system",
		Candidates:    3,
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
		RestartDelay:  time.Second,
	}
}

// Run contests every lease until ctx is done. Observer may be nil.
func Run(ctx context.Context, cfg Config, rec *timeline.Recorder, observer *transport.Observer, logger *zap.Logger) error {
	timeout := cfg.RequestTimeout
	if timeout == 0 {
		timeout = leaselock.RequestTimeout(cfg.RenewDeadline)
	}
	var wg sync.WaitGroup
	var clients []*kubernetes.Client
	defer func() {
		wg.Wait()
		for _, client := range clients {
			client.Close()
		}
	}()
	shared := map[int]*kubernetes.Client{}
	n := 0
	for _, lease := range cfg.Leases {
		for i := 0; i < cfg.Candidates; i++ {
			identity := fmt.Sprintf("%s-%d", lease, cfg.FirstIndex+i)
			label, k := identity, n
			if cfg.SharedClients > 0 {
				k = (cfg.FirstIndex + i) % cfg.SharedClients
				label = SharedLabel(k)
			}
			n++
			client, ok := shared[k]
			if !ok {
				if observer != nil {
					observer.Label(label)
				}
				// Candidate (or shared client) k prefers member k, like the
				// emulator's: the endpoint list is rotated (the client
				// balances over all of them).
				r := k % len(cfg.Endpoints)
				endpoints := append(append([]string{}, cfg.Endpoints[r:]...), cfg.Endpoints[:r]...)
				var err error
				client, err = etcdclient.New(endpoints, transport.MemberTracing(), logger)
				if err != nil {
					return fmt.Errorf("%s: %w", label, err)
				}
				clients = append(clients, client)
				if cfg.SharedClients > 0 {
					shared[k] = client
				}
			}
			c := &candidate{
				rec:      rec,
				lease:    lease,
				identity: identity,
				lock: &leaselock.Lock{KV: client.KV, Namespace: cfg.Namespace, Name: lease,
					ID: identity, Timeout: timeout},
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.run(ctx, cfg)
			}()
		}
	}
	<-ctx.Done()
	return nil
}

// SharedLabel names shared client k in transport records: the apiserver whose
// leases client it stands for.
func SharedLabel(k int) string {
	return fmt.Sprintf("apiserver-%d/leases", k)
}

type candidate struct {
	rec      *timeline.Recorder
	lease    string
	identity string
	lock     *leaselock.Lock

	mu      sync.Mutex
	leading bool
	stopped bool
}

func (c *candidate) run(ctx context.Context, cfg Config) {
	for ctx.Err() == nil {
		c.mu.Lock()
		c.leading, c.stopped = false, false
		c.mu.Unlock()
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:          &recordingLock{Lock: c.lock, c: c},
			LeaseDuration: cfg.LeaseDuration,
			RenewDeadline: cfg.RenewDeadline,
			RetryPeriod:   cfg.RetryPeriod,
			Name:          c.lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: c.started,
				OnStoppedLeading: c.stoppedLeading,
			},
		})
		if err != nil {
			// Validated before anything runs; only a bug gets here.
			panic(err)
		}
		elector.Run(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.RestartDelay):
		}
	}
}

// started runs (in its own goroutine, as client-go calls it) once the lease is won.
func (c *candidate) started(ctx context.Context) {
	c.mu.Lock()
	if !c.stopped {
		c.leading = true
		c.rec.Leader(c.lease, c.identity, true)
	}
	c.mu.Unlock()
	<-ctx.Done()
}

// stoppedLeading runs when the elector returns, whether it led or not.
func (c *candidate) stoppedLeading() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leading {
		c.rec.Leader(c.lease, c.identity, false)
	}
	c.leading, c.stopped = false, true
}

func (c *candidate) isLeading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

// recordingLock records each lock request and the election steps the analysis
// names, like the emulated plane's RecordingLock: a leader reading the record
// is on the slow path (its optimistic update failed); a failed write is a
// failed renewal while leading and a failed acquisition otherwise.
type recordingLock struct {
	*leaselock.Lock
	c *candidate
}

func (l *recordingLock) Get(ctx context.Context) (*rl.LeaderElectionRecord, []byte, error) {
	if l.c.isLeading() {
		l.c.rec.Event(l.c.identity, timeline.SlowPath, l.c.lease)
	}
	var record *rl.LeaderElectionRecord
	var raw []byte
	err := l.request(ctx, func(ctx context.Context) (err error) {
		record, raw, err = l.Lock.Get(ctx)
		return err
	})
	return record, raw, err
}

func (l *recordingLock) Create(ctx context.Context, record rl.LeaderElectionRecord) error {
	return l.write(ctx, func(ctx context.Context) error { return l.Lock.Create(ctx, record) })
}

func (l *recordingLock) Update(ctx context.Context, record rl.LeaderElectionRecord) error {
	return l.write(ctx, func(ctx context.Context) error { return l.Lock.Update(ctx, record) })
}

func (l *recordingLock) write(ctx context.Context, op func(context.Context) error) error {
	leading := l.c.isLeading()
	err := l.request(ctx, op)
	if err != nil {
		kind := timeline.AcquireFailed
		if leading {
			kind = timeline.RenewFailed
		}
		l.c.rec.Event(l.c.identity, kind, l.c.lease)
	}
	return err
}

// request records one lock request as the emulated apiserver records the
// lock's transactions: op "txn"; a refused swap or a missing record is the
// server answering correctly, not an error.
func (l *recordingLock) request(ctx context.Context, op func(context.Context) error) error {
	member := &transport.Member{}
	started := time.Now()
	err := op(transport.WithMember(ctx, member))
	class := timeline.Classify(err)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		class = timeline.NoError
	}
	l.c.rec.Request(l.c.identity, "txn", timeline.Since(started), class, member.String())
	return err
}
