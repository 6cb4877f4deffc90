package main

import (
	"fmt"
	"io"
	"strings"

	"etcdlab/oracle/internal/apiserver"
)

const apiserverUsage = `usage: etcdlab-oracle apiserver --endpoints HOST:PORT,... [flags]

kube-apiserver's etcd side, built by its own code (k8s.io/apiserver v0.37.2,
pkg/storage/storagebackend/factory), recorded as component --name:

  checks   livez "etcd" (CreateHealthCheck, --healthcheck-timeout) and readyz
           "etcd-readiness" (CreateReadyCheck, --readycheck-timeout), each with
           its own etcd client, each called every --probe-period; the factory
           probes at most once per timeout/2 and answers the last result in
           between. Health records: component NAME for livez,
           NAME/etcd-readiness for readyz; a "note" event when one turns
           unhealthy says why.
  storage  one etcd3 store (and so one etcd client: keepalive 30 s/10 s, dial
           timeout 20 s, gRPC round_robin over every endpoint) per --resources
           entry, keys <prefix>/<resource>/<name>, like the real apiserver.
  watch    per resource, list then watch from the list's revision (progress
           notify, require-leader), like the watch cache; a "relist" event on
           NAME/cache when a watch ends.
  load     --write-rate operations/s by --workers workers on --objects objects
           of the first resource: create, --updates updates, delete, again.
           Request records (op create|update|delete) with the member that
           served each.

Defaults are the apiserver's own, or the emulated apiserver's (see oracle/README.md).
`

func runAPIServer(args []string, stdout, stderr io.Writer) error {
	cfg := apiserver.Defaults()
	var c common
	fs := newFlagSet("apiserver", apiserverUsage, stdout)
	c.register(fs)
	fs.StringVar(&cfg.Name, "name", cfg.Name, "component name of the records")
	fs.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "key prefix (kube-apiserver --etcd-prefix); the checks read <prefix>/health")
	fs.Var(seconds{&cfg.HealthcheckTimeout}, "healthcheck-timeout", "livez etcd check timeout (kube-apiserver --etcd-healthcheck-timeout)")
	fs.Var(seconds{&cfg.ReadycheckTimeout}, "readycheck-timeout", "readyz etcd-readiness check timeout (kube-apiserver --etcd-readycheck-timeout)")
	fs.Var(seconds{&cfg.ProbePeriod}, "probe-period", "call each check this often, start to start (the emulated health_check_interval)")
	fs.Var(list{&cfg.Resources}, "resources", "resources, one store, client and watch each; the load writes the first")
	fs.Float64Var(&cfg.WriteRate, "write-rate", cfg.WriteRate, "write operations per second (0: no load)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "workers sharing the load; each waits for its request")
	fs.IntVar(&cfg.Objects, "objects", cfg.Objects, "objects the load cycles through (named NAME-<i>)")
	fs.IntVar(&cfg.Updates, "updates", cfg.Updates, "updates of an object between its create and its delete")
	fs.Var(seconds{&cfg.RequestTimeout}, "request-timeout", "deadline of each load request (kube-apiserver --request-timeout)")
	fs.BoolVar(&cfg.Watch, "watch", cfg.Watch, "list and watch every resource, like the watch cache")
	fs.Var(seconds{&cfg.RelistBackoff}, "relist-backoff", "pause before listing again after a watch ended")
	fs.Var(seconds{&cfg.CompactionInterval}, "compaction-interval", "compact etcd this often like kube-apiserver --etcd-compaction-interval (its default 5m); 0: never, like the emulation")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if err := validateAPIServer(cfg); err != nil {
		return err
	}
	cfg.Endpoints = c.endpoints
	ctx, rec, finish, err := c.start(stdout)
	if err != nil {
		return err
	}
	observer := observe(&c, rec, func(string) string { return cfg.Name })
	runErr := apiserver.Run(ctx, cfg, rec, observer)
	if err := finish(); runErr == nil && err != nil {
		runErr = fmt.Errorf("writing records: %w", err)
	}
	return runErr
}

func validateAPIServer(cfg apiserver.Config) error {
	switch {
	case !validName(cfg.Name):
		return flagErr("name", "%q: use letters, digits, '-', '.', '_'", cfg.Name)
	case !strings.HasPrefix(cfg.Prefix, "/"):
		return flagErr("prefix", "%q must start with '/'", cfg.Prefix)
	case cfg.HealthcheckTimeout <= 0:
		return flagErr("healthcheck-timeout", "must be positive")
	case cfg.ReadycheckTimeout <= 0:
		return flagErr("readycheck-timeout", "must be positive")
	case cfg.ProbePeriod <= 0:
		return flagErr("probe-period", "must be positive")
	case len(cfg.Resources) == 0:
		return flagErr("resources", "at least one")
	case cfg.WriteRate < 0:
		return flagErr("write-rate", "must not be negative")
	case cfg.Workers < 1:
		return flagErr("workers", "at least 1")
	case cfg.Objects < 1:
		return flagErr("objects", "at least 1")
	case cfg.Updates < 0:
		return flagErr("updates", "must not be negative")
	case cfg.RequestTimeout <= 0:
		return flagErr("request-timeout", "must be positive")
	case cfg.RelistBackoff <= 0:
		return flagErr("relist-backoff", "must be positive")
	case cfg.CompactionInterval < 0:
		return flagErr("compaction-interval", "must not be negative")
	}
	seen := map[string]bool{}
	for _, r := range cfg.Resources {
		if !validName(r) {
			return flagErr("resources", "%q: use letters, digits, '-', '.', '_'", r)
		}
		if seen[r] {
			return flagErr("resources", "%q twice", r)
		}
		seen[r] = true
	}
	return nil
}
