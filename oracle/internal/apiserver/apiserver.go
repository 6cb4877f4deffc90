// Package apiserver runs what the emulated apiserver does against etcd, with
// kube-apiserver's own code: its storage (one etcd3 store and so one etcd
// client per resource, made by storagebackend/factory.Create), its livez
// "etcd" and readyz "etcd-readiness" checks (factory.CreateHealthCheck and
// CreateReadyCheck, each with its own client), a list+watch per resource
// like the watch cache's, and a write load of create/update/delete.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/storagebackend/factory"

	"etcdlab/oracle/internal/timeline"
	"etcdlab/oracle/internal/transport"
)

// Config of one apiserver.
type Config struct {
	Name      string // the component name of its records
	Endpoints []string
	Prefix    string // --etcd-prefix

	HealthcheckTimeout time.Duration // --etcd-healthcheck-timeout
	ReadycheckTimeout  time.Duration // --etcd-readycheck-timeout
	// ProbePeriod: each check is called this often, start to start (the
	// emulated HealthChecker's health_check_interval).
	ProbePeriod time.Duration

	Resources []string // one store, client and watch each
	// Write load: WriteRate operations per second over Workers workers, on
	// Objects objects of the first resource, each object created, updated
	// Updates times, deleted, and created again.
	WriteRate float64
	Workers   int
	Objects   int
	Updates   int
	// RequestTimeout bounds each request (kube-apiserver's --request-timeout).
	RequestTimeout time.Duration
	// Watch: list and watch every resource, like the watch cache.
	Watch bool
	// RelistBackoff: pause before listing again after a watch ended.
	RelistBackoff time.Duration
	// CompactionInterval: the apiserver's --etcd-compaction-interval
	// (its default is 5 min; 0, the default here, compacts nothing, like the
	// emulation).
	CompactionInterval time.Duration
}

// Defaults are the apiserver's where it has one and the emulated
// apiserver's load otherwise (see the README).
func Defaults() Config {
	return Config{
		Name:               "apiserver-0",
		Prefix:             "/registry",
		HealthcheckTimeout: storagebackend.DefaultHealthcheckTimeout,
		ReadycheckTimeout:  storagebackend.DefaultReadinessTimeout,
		ProbePeriod:        time.Second,
		Resources:          []string{"pods", "nodes", "deployments", "replicasets", "statefulsets", "daemonsets"},
		WriteRate:          2,
		Workers:            2,
		Objects:            20,
		Updates:            1,
		RequestTimeout:     60 * time.Second,
		Watch:              true,
		RelistBackoff:      time.Second,
	}
}

// ReadinessComponent is the component name of the readyz check's records;
// the livez check's are the apiserver's own name.
func ReadinessComponent(name string) string { return name + "/etcd-readiness" }

func (c Config) storageConfig() storagebackend.Config {
	sc := storagebackend.NewDefaultConfig(c.Prefix, unstructured.UnstructuredJSONScheme)
	sc.Transport.ServerList = c.Endpoints
	sc.Transport.TracerProvider = transport.MemberTracing()
	sc.HealthcheckTimeout = c.HealthcheckTimeout
	sc.ReadycheckTimeout = c.ReadycheckTimeout
	sc.CompactionInterval = c.CompactionInterval
	return *sc
}

// Run runs the apiserver until ctx is done. observer may be nil.
func Run(ctx context.Context, cfg Config, rec *timeline.Recorder, observer *transport.Observer) error {
	sc := cfg.storageConfig()
	label := func(name string) {
		if observer != nil {
			observer.Label(name)
		}
	}
	builds := func() int {
		if observer == nil {
			return 0
		}
		return observer.Builds()
	}
	waitBuild := func(n int) {
		// Each check builds its client in the background; wait until its
		// channel exists so the next label is not taken for it.
		if observer != nil {
			observer.WaitBuilds(n, 2*time.Second)
		}
	}

	stop := make(chan struct{})
	defer close(stop)
	label("livez")
	before := builds()
	livez, err := factory.CreateHealthCheck(sc, stop)
	if err != nil {
		return fmt.Errorf("livez etcd check: %w", err)
	}
	waitBuild(before + 1)
	label("readyz")
	before = builds()
	readyz, err := factory.CreateReadyCheck(sc, stop)
	if err != nil {
		return fmt.Errorf("readyz etcd-readiness check: %w", err)
	}
	waitBuild(before + 1)

	stores := make(map[string]storage.Interface, len(cfg.Resources))
	for _, resource := range cfg.Resources {
		label(resource)
		store, destroy, err := factory.Create(
			*sc.ForResource(schema.GroupResource{Group: "etcdlab", Resource: resource}),
			newObject, newList, "/"+resource)
		if err != nil {
			return fmt.Errorf("storage for %s: %w", resource, err)
		}
		defer destroy()
		stores[resource] = store
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	spawn := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	// Probe once the checks' clients are up, as a kubelet would only start
	// asking after the process started; not recorded.
	awaitCheck(ctx, livez, time.Now().Add(20*time.Second))
	awaitCheck(ctx, readyz, time.Now().Add(20*time.Second))
	spawn(func() { probe(ctx, livez, cfg.ProbePeriod, cfg.Name, rec) })
	spawn(func() { probe(ctx, readyz, cfg.ProbePeriod, ReadinessComponent(cfg.Name), rec) })
	if cfg.Watch {
		for _, resource := range cfg.Resources {
			spawn(func() { watchLoop(ctx, stores[resource], resource, cfg, rec) })
		}
	}
	if cfg.WriteRate > 0 && len(cfg.Resources) > 0 {
		w := newWriter(cfg, stores[cfg.Resources[0]], cfg.Resources[0], rec)
		for i := 0; i < cfg.Workers; i++ {
			spawn(func() { w.work(ctx) })
		}
	}
	<-ctx.Done()
	return nil
}

func newObject() runtime.Object { return &unstructured.Unstructured{} }
func newList() runtime.Object   { return &unstructured.UnstructuredList{} }

func awaitCheck(ctx context.Context, check func() error, deadline time.Time) {
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if check() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probe calls check every period (start to start) and records each verdict;
// when it turns unhealthy, a note says why.
func probe(ctx context.Context, check func() error, period time.Duration, component string, rec *timeline.Recorder) {
	healthy := true
	for ctx.Err() == nil {
		started := time.Now()
		err := check()
		if ctx.Err() != nil {
			return
		}
		rec.Health(component, err == nil)
		if err != nil && healthy {
			rec.Event(component, timeline.Note, "etcd check failed: "+err.Error())
		}
		healthy = err == nil
		select {
		case <-ctx.Done():
		case <-time.After(period - time.Since(started)):
		}
	}
}

// watchLoop lists a resource and watches it from the list's revision, with
// progress notifications and etcd's require-leader (as the store's watcher
// always asks), listing again after RelistBackoff whenever the watch ends.
func watchLoop(ctx context.Context, store storage.Interface, resource string, cfg Config, rec *timeline.Recorder) {
	for ctx.Err() == nil {
		if err := watchOnce(ctx, store, resource); err != nil && ctx.Err() == nil {
			rec.Event(cfg.Name+"/cache", timeline.Relist, resource+": "+err.Error())
		}
		select {
		case <-ctx.Done():
		case <-time.After(cfg.RelistBackoff):
		}
	}
}

func watchOnce(ctx context.Context, store storage.Interface, resource string) error {
	list := &unstructured.UnstructuredList{}
	opts := storage.ListOptions{Recursive: true, Predicate: storage.Everything}
	if err := store.GetList(ctx, "/"+resource+"/", opts, list); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	w, err := store.Watch(ctx, "/"+resource+"/", storage.ListOptions{
		ResourceVersion: list.GetResourceVersion(),
		Recursive:       true,
		ProgressNotify:  true,
		Predicate:       storage.Everything,
	})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case event, ok := <-w.ResultChan():
			if !ok {
				return errors.New("watch closed")
			}
			if event.Type == "ERROR" {
				return fmt.Errorf("watch error: %v", event.Object)
			}
		}
	}
}
