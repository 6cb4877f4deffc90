package main

import (
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/tools/leaderelection"

	"etcdlab/oracle/internal/elect"
	"etcdlab/oracle/internal/leaselock"
)

const electUsage = `usage: etcdlab-oracle elect --endpoints HOST:PORT,... [flags]

client-go's leader election (k8s.io/client-go v0.37.2 tools/leaderelection,
unchanged) for --candidates candidates per --lease. Each candidate has its own
etcd client, built with the apiserver's settings (keepalive 30 s/10 s, dial
timeout 20 s), its endpoint list rotated so candidate i prefers member i. The
lock keeps a coordination.k8s.io/v1 Lease as JSON at
/registry/leases/<namespace>/<lease>, read with a one-range transaction and
swapped on the key's mod revision, like the emulator's EtcdLeaseLock; each
Get/Create/Update is bounded by --request-timeout (default: client-go's Lease
lock timeout, max(1 s, renew-deadline/2)). A candidate whose elector returns
starts again after --restart-delay, like a restarted controller manager.

records: LeaderChange when a candidate starts/stops believing it leads;
Request (component = identity <lease>-<i>, op "txn") per lock request;
Event slow_path (a leader reading the record), renew_failed, acquire_failed
(detail: the lease), as the emulated plane's RecordingLock records them.
`

func runElect(args []string, stdout, stderr io.Writer) error {
	cfg := elect.Defaults()
	var c common
	fs := newFlagSet("elect", electUsage, stdout)
	c.register(fs)
	fs.Var(list{&cfg.Leases}, "lease", "lease name(s), comma-separated; each is contested by --candidates candidates")
	fs.StringVar(&cfg.Namespace, "namespace", cfg.Namespace, "lease namespace (part of the key)")
	fs.IntVar(&cfg.Candidates, "candidates", cfg.Candidates, "candidates per lease in this process")
	fs.IntVar(&cfg.FirstIndex, "first-index", cfg.FirstIndex, "identities are <lease>-<first-index+i> (to spread one lease's candidates over processes)")
	fs.Var(seconds{&cfg.LeaseDuration}, "lease-duration", "LeaseDuration: how long a non-leader waits after the record last changed")
	fs.Var(seconds{&cfg.RenewDeadline}, "renew-deadline", "RenewDeadline: how long the leader retries renewing before it steps down")
	fs.Var(seconds{&cfg.RetryPeriod}, "retry-period", "RetryPeriod: pause between attempts (acquire attempts jittered by 1.2)")
	fs.Var(seconds{&cfg.RequestTimeout}, "request-timeout", "timeout of each lock request (default max(1s, renew-deadline/2))")
	fs.Var(seconds{&cfg.RestartDelay}, "restart-delay", "pause before a candidate whose elector returned runs a new one")
	fs.IntVar(&cfg.SharedClients, "shared-clients", cfg.SharedClients, "0: an etcd client per candidate; N: candidate <lease>-<k> uses client k mod N, like N apiservers each writing every Lease through one client (transport records as apiserver-<k>/leases)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if err := validateElect(cfg); err != nil {
		return err
	}
	cfg.Endpoints = c.endpoints
	ctx, rec, finish, err := c.start(stdout)
	if err != nil {
		return err
	}
	observer := observe(&c, rec, nil)
	runErr := elect.Run(ctx, cfg, rec, observer, etcdLogger())
	if err := finish(); runErr == nil && err != nil {
		runErr = fmt.Errorf("writing records: %w", err)
	}
	return runErr
}

// validateElect checks, in client-go's order, what NewLeaderElector would
// refuse, so the error names the flag.
func validateElect(cfg elect.Config) error {
	retryJittered := time.Duration(leaderelection.JitterFactor * float64(cfg.RetryPeriod))
	switch {
	case cfg.LeaseDuration <= cfg.RenewDeadline:
		return flagErr("lease-duration", "%v must be greater than --renew-deadline %v", cfg.LeaseDuration, cfg.RenewDeadline)
	case cfg.RenewDeadline <= retryJittered:
		return flagErr("renew-deadline", "%v must be greater than --retry-period × %v = %v", cfg.RenewDeadline, leaderelection.JitterFactor, retryJittered)
	case cfg.LeaseDuration < time.Second:
		// Stored as whole seconds (leaseDurationSeconds): under 1 s the record
		// would say 0 and every candidate would judge it expired.
		return flagErr("lease-duration", "at least 1s (the record stores whole seconds)")
	case cfg.RetryPeriod <= 0:
		return flagErr("retry-period", "must be positive")
	case cfg.Candidates < 1:
		return flagErr("candidates", "at least 1")
	case cfg.FirstIndex < 0:
		return flagErr("first-index", "must not be negative")
	case cfg.RequestTimeout < 0:
		return flagErr("request-timeout", "must not be negative (0: max(1s, renew-deadline/2) = %v)", leaselock.RequestTimeout(cfg.RenewDeadline))
	case cfg.RestartDelay < 0:
		return flagErr("restart-delay", "must not be negative")
	case cfg.SharedClients < 0:
		return flagErr("shared-clients", "must not be negative")
	case !validName(cfg.Namespace):
		return flagErr("namespace", "%q: use letters, digits, '-', '.', '_'", cfg.Namespace)
	}
	seen := map[string]bool{}
	for _, lease := range cfg.Leases {
		if !validName(lease) {
			return flagErr("lease", "%q: use letters, digits, '-', '.', '_'", lease)
		}
		if seen[lease] {
			return flagErr("lease", "%q twice", lease)
		}
		seen[lease] = true
	}
	return nil
}
