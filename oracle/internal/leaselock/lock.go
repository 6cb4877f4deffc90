package leaselock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

var leases = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

// RequestTimeout is the timeout client-go's Lease lock gives each Get and
// Update: resourcelock.NewFromKubeconfig sets the REST client's Timeout to
// RenewDeadline/2, at least one second.
func RequestTimeout(renewDeadline time.Duration) time.Duration {
	return max(time.Second, renewDeadline/2)
}

// Lock is a resourcelock.Interface over one etcd key.
type Lock struct {
	KV        clientv3.KV
	Namespace string
	Name      string
	ID        string
	// Timeout bounds each Get, Create and Update (see RequestTimeout); 0: none.
	Timeout time.Duration

	mu       sync.Mutex
	revision int64 // the key's mod revision as last read or written; 0: unknown
}

var _ rl.Interface = (*Lock)(nil)

// Revision is the key's mod revision as this lock last saw it (0: never).
func (l *Lock) Revision() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.revision
}

func (l *Lock) key() string { return Key(l.Namespace, l.Name) }

func (l *Lock) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if l.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, l.Timeout)
}

// Get reads the record with a transaction holding one range (a linearizable
// read, like the emulator's lock). The raw record returned is the JSON of the
// LeaderElectionRecord, as client-go's LeaseLock returns it, so the elector's
// "has the record changed" test sees what it sees against a real apiserver.
// No record: a NotFound API error, as the elector expects.
func (l *Lock) Get(ctx context.Context) (*rl.LeaderElectionRecord, []byte, error) {
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	resp, err := l.KV.Txn(ctx).Then(clientv3.OpGet(l.key())).Commit()
	if err != nil {
		return nil, nil, err
	}
	if len(resp.Responses) != 1 || resp.Responses[0].GetResponseRange() == nil {
		return nil, nil, fmt.Errorf("lease %s: malformed transaction response", l.Describe())
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, nil, apierrors.NewNotFound(leases, l.Name)
	}
	record, err := DecodeLease(kvs[0].Value)
	if err != nil {
		return nil, nil, fmt.Errorf("lease %s: %w", l.Describe(), err)
	}
	raw, err := json.Marshal(*record)
	if err != nil {
		return nil, nil, err
	}
	l.mu.Lock()
	l.revision = kvs[0].ModRevision
	l.mu.Unlock()
	return record, raw, nil
}

// Create stores the first record; AlreadyExists if there is one.
func (l *Lock) Create(ctx context.Context, record rl.LeaderElectionRecord) error {
	absent := clientv3.Compare(clientv3.CreateRevision(l.key()), "=", 0)
	return l.swap(ctx, absent, record, func() error {
		return apierrors.NewAlreadyExists(leases, l.Name)
	})
}

// Update replaces the record if it is still at the revision this lock last
// saw; Conflict otherwise.
func (l *Lock) Update(ctx context.Context, record rl.LeaderElectionRecord) error {
	revision := l.Revision()
	if revision == 0 {
		return errors.New("lease not initialized, call get or create first")
	}
	unchanged := clientv3.Compare(clientv3.ModRevision(l.key()), "=", revision)
	return l.swap(ctx, unchanged, record, func() error {
		return apierrors.NewConflict(leases, l.Name,
			fmt.Errorf("changed since revision %d", revision))
	})
}

func (l *Lock) swap(ctx context.Context, guard clientv3.Cmp, record rl.LeaderElectionRecord, refused func() error) error {
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	value := EncodeLease(record, l.Name, l.Namespace)
	resp, err := l.KV.Txn(ctx).If(guard).Then(clientv3.OpPut(l.key(), string(value))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return refused()
	}
	// One put in the transaction: the store revision after it is the key's
	// mod revision.
	l.mu.Lock()
	l.revision = resp.Header.Revision
	l.mu.Unlock()
	return nil
}

// RecordEvent does nothing: there is no Kubernetes event sink here.
func (l *Lock) RecordEvent(string) {}

// Identity is the candidate's identity.
func (l *Lock) Identity() string { return l.ID }

// Describe is "namespace/name", like client-go's LeaseLock.
func (l *Lock) Describe() string { return l.Namespace + "/" + l.Name }
