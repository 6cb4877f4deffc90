package apiserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/storage"

	"etcdlab/oracle/internal/timeline"
	"etcdlab/oracle/internal/transport"
)

// writer cycles objects through create, Updates updates and delete, through
// the store as the apiserver's registry does with its watch cache in front:
// updates and deletes start from the last known object, so each is one
// transaction guarded by the object's mod revision (the store reads and
// retries only when that guess is stale).
type writer struct {
	cfg      Config
	store    storage.Interface
	resource string
	rec      *timeline.Recorder
	period   time.Duration

	mu      sync.Mutex
	next    int
	objects []*object
}

type object struct {
	sync.Mutex
	name    string
	current *unstructured.Unstructured // nil: absent
	updates int
}

func newWriter(cfg Config, store storage.Interface, resource string, rec *timeline.Recorder) *writer {
	w := &writer{cfg: cfg, store: store, resource: resource, rec: rec,
		period: time.Duration(float64(cfg.Workers) / cfg.WriteRate * float64(time.Second))}
	for i := 0; i < cfg.Objects; i++ {
		w.objects = append(w.objects, &object{name: fmt.Sprintf("%s-%d", cfg.Name, i)})
	}
	return w
}

// work issues one operation per period; one that takes longer delays the
// next (a worker waits for its request, like a controller's worker).
func (w *writer) work(ctx context.Context) {
	ticker := time.NewTicker(w.period)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if o := w.pick(); o != nil {
			w.step(ctx, o)
			o.Unlock()
		}
	}
}

// pick takes the next object no other worker holds (locked), or nil.
func (w *writer) pick() *object {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range w.objects {
		o := w.objects[w.next%len(w.objects)]
		w.next++
		if o.TryLock() {
			return o
		}
	}
	return nil
}

func (w *writer) key(o *object) string { return "/" + w.resource + "/" + o.name }

func (w *writer) step(ctx context.Context, o *object) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	member := &transport.Member{}
	ctx = transport.WithMember(ctx, member)
	started := time.Now()
	var op string
	var err error
	switch {
	case o.current == nil:
		op = "create"
		out := &unstructured.Unstructured{}
		err = w.store.Create(ctx, w.key(o), w.fresh(o), out, 0)
		switch {
		case err == nil:
			o.current, o.updates = out, 0
		case storage.IsExist(err):
			// Left by an earlier run: update it from what etcd has.
			o.current, o.updates = w.fresh(o), 0
			o.current.SetResourceVersion("")
		}
	case o.updates < w.cfg.Updates:
		op = "update"
		out := &unstructured.Unstructured{}
		var cached runtime.Object
		if o.current.GetResourceVersion() != "" {
			cached = o.current.DeepCopy()
		}
		err = w.store.GuaranteedUpdate(ctx, w.key(o), out, false, nil,
			func(input runtime.Object, _ storage.ResponseMeta) (runtime.Object, *uint64, error) {
				u := input.(*unstructured.Unstructured).DeepCopy()
				generation, _, _ := unstructured.NestedInt64(u.Object, "spec", "generation")
				_ = unstructured.SetNestedField(u.Object, generation+1, "spec", "generation")
				_ = unstructured.SetNestedField(u.Object, true, "spec", "ready")
				return u, nil, nil
			}, cached)
		switch {
		case err == nil:
			o.current = out
			o.updates++
		case storage.IsNotFound(err):
			o.current = nil
		}
	default:
		op = "delete"
		var cached runtime.Object
		if o.current.GetResourceVersion() != "" {
			cached = o.current.DeepCopy()
		}
		err = w.store.Delete(ctx, w.key(o), &unstructured.Unstructured{}, nil,
			storage.ValidateAllObjectFunc, cached, storage.DeleteOptions{})
		if err == nil || storage.IsNotFound(err) {
			o.current = nil
		}
	}
	w.rec.Request(w.cfg.Name, op, timeline.Since(started), classify(err), member.String())
}

func (w *writer) fresh(o *object) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"owner": w.cfg.Name, "generation": int64(0), "ready": false},
	}}
	u.SetAPIVersion("etcdlab/v1")
	u.SetKind(w.resource)
	u.SetName(o.name)
	return u
}

// classify: the storage layer's "already exists", "not found" and conflict
// are the apiserver answering correctly (the emulation records them as
// successes too); anything else is classified like an etcd client error.
func classify(err error) timeline.ErrorClass {
	if err == nil || storage.IsExist(err) || storage.IsNotFound(err) || storage.IsConflict(err) {
		return timeline.NoError
	}
	return timeline.Classify(err)
}
