// Command etcdlab-oracle runs the real Go clients that etcdlab's Python
// emulation stands for, against a real etcd cluster, and writes what they did
// as timeline records (JSON lines) the scenario engine can merge.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"etcdlab/oracle/internal/timeline"
	"etcdlab/oracle/internal/transport"
)

const topUsage = `etcdlab-oracle: the real Go clients etcdlab's emulation stands for, run against
a real etcd cluster, writing timeline records as JSON lines.

usage: etcdlab-oracle COMMAND [flags]

commands:
  apiserver   kube-apiserver's etcd storage (k8s.io/apiserver storagebackend
              factory: one client per resource), its livez "etcd" and readyz
              "etcd-readiness" checks probed every second, a list+watch per
              resource and a create/update/delete load
  elect       client-go leader election (tools/leaderelection, unchanged) for
              several candidates per lease over a Lease record kept in etcd
              like the emulator's EtcdLeaseLock

Both run until SIGINT/SIGTERM (or --duration) and exit 0; bad input exits 2
with one line naming the flag. Run 'etcdlab-oracle COMMAND -h' for its flags.

output: one JSON object per line on stdout (or --out FILE); "type" is the
emulator's record class, the other fields are its fields (emulator/common/timeline.py):
  {"type":"Request","t":1.52,"component":"apiserver-0","op":"create","latency":0.0031,"error":null,"source":"etcd","member":"127.0.0.1:23790"}
  {"type":"Health","t":2.0,"component":"apiserver-0","healthy":true}
  {"type":"Event","t":0.01,"component":"apiserver-0","kind":"transport_state","detail":"127.0.0.1:23790 READY pods"}
  {"type":"LeaderChange","t":0.4,"lease":"kube-scheduler","candidate":"kube-scheduler-0","leading":true}
t is seconds since --start-unix (default: process start); error is null or
context|cluster|response|other; member (an addition) is the endpoint that served
the request's last attempt, null if unknown.

example:
  etcdlab-oracle apiserver --endpoints 127.0.0.1:23790,127.0.0.1:23791,127.0.0.1:23792 --duration 30s
  etcdlab-oracle elect --endpoints 127.0.0.1:23790,127.0.0.1:23791 --lease kube-scheduler --candidates 2
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		fmt.Fprintln(stderr, "etcdlab-oracle: a COMMAND is required (apiserver or elect)")
		return 2
	}
	var err error
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, topUsage)
		return 0
	case "apiserver":
		err = runAPIServer(args[1:], stdout, stderr)
	case "elect":
		err = runElect(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "etcdlab-oracle: unknown command %q (want apiserver or elect; -h for help)\n", args[0])
		return 2
	}
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "etcdlab-oracle %s: %s\n", args[0], usage.msg)
		return 2
	default:
		fmt.Fprintf(stderr, "etcdlab-oracle %s: %v\n", args[0], err)
		return 1
	}
}

// common holds the flags every command has.
type common struct {
	endpoints []string
	out       string
	startUnix float64
	duration  time.Duration
	observe   bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.Var(list{&c.endpoints}, "endpoints", "etcd client endpoints, comma-separated HOST:PORT (e.g. the fault proxies' client links); required")
	fs.StringVar(&c.out, "out", "", "write the records to this file instead of stdout")
	fs.Float64Var(&c.startUnix, "start-unix", 0, "t = 0 at this Unix time in seconds, e.g. the scenario engine's run start (default: process start)")
	fs.Var(seconds{&c.duration}, "duration", "stop by itself after this long (default: run until SIGINT/SIGTERM)")
	fs.BoolVar(&c.observe, "observe-transport", true, "record connection state changes and keepalive closes as events (wraps gRPC's round_robin balancer without changing it)")
}

func (c *common) validate() error {
	if len(c.endpoints) == 0 {
		return flagErr("endpoints", "required: comma-separated HOST:PORT of the etcd members (or their proxies)")
	}
	for _, e := range c.endpoints {
		hostPort := e
		if i := strings.Index(e, "://"); i >= 0 {
			hostPort = e[i+3:]
		}
		if i := strings.LastIndex(hostPort, ":"); i <= 0 || i == len(hostPort)-1 {
			return flagErr("endpoints", "%q is not HOST:PORT", e)
		}
	}
	if c.startUnix < 0 {
		return flagErr("start-unix", "must not be negative")
	}
	if c.duration < 0 {
		return flagErr("duration", "must not be negative")
	}
	return nil
}

// start opens the output and the recorder and returns the run's context,
// done on SIGINT/SIGTERM or after --duration; finish ends the run.
func (c *common) start(stdout io.Writer) (ctx context.Context, rec *timeline.Recorder, finish func() error, err error) {
	started := time.Now()
	out := stdout
	var file *os.File
	if c.out != "" {
		file, err = os.Create(c.out)
		if err != nil {
			return nil, nil, nil, flagErr("out", "%v", err)
		}
		out = file
	}
	origin := c.startUnix
	if origin == 0 {
		origin = float64(started.UnixNano()) / 1e9
	}
	rec = timeline.NewRecorder(out, origin)
	// The run ends at the signal (or --duration): the recorder is finished
	// first, so what the clients do while shutting down (leaders stepping
	// down, calls cancelled) is not recorded, and only then is the run's
	// context cancelled. A shutdown that hangs is cut short.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	var timeUp <-chan time.Time
	if c.duration > 0 {
		timeUp = time.After(c.duration)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-signals:
		case <-timeUp:
		}
		_ = rec.Finish()
		cancel()
		time.Sleep(15 * time.Second)
		fmt.Fprintln(os.Stderr, "etcdlab-oracle: shutdown took over 15 s; exiting")
		os.Exit(1)
	}()
	finish = func() error {
		signal.Stop(signals)
		cancel()
		err := rec.Finish()
		if file != nil {
			if cerr := file.Close(); err == nil {
				err = cerr
			}
		}
		return err
	}
	return ctx, rec, finish, nil
}

func newFlagSet(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every parse error; errors are one line
	// (see parse), so the full text is printed only for -h.
	fs.Usage = func() {}
	helpText[fs] = func() {
		fmt.Fprint(stdout, usage)
		fmt.Fprintln(stdout, "\nflags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

var helpText = map[*flag.FlagSet]func(){}

// parse turns the flag package's multi-line errors into one line naming the flag.
func parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		helpText[fs]()
		return err
	}
	if err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "flag provided but not defined: ") {
			name := strings.TrimLeft(strings.TrimPrefix(msg, "flag provided but not defined: "), "-")
			return flagErr(name, "no such flag (-h lists them)")
		}
		if strings.HasPrefix(msg, "invalid value ") {
			// invalid value "x" for flag -name: reason
			if i := strings.Index(msg, " for flag -"); i >= 0 {
				rest := msg[i+len(" for flag -"):]
				name, reason, _ := strings.Cut(rest, ": ")
				return flagErr(name, "%s: %s", strings.TrimPrefix(msg[:i], "invalid value "), reason)
			}
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
			return flagErr(name, "needs a value")
		}
		return usageError{msg}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q (flags only; -h lists them)", fs.Arg(0))}
	}
	return nil
}

// etcdLogger is what the apiserver gives its etcd clients: zap at info
// level (ETCD_CLIENT_DEBUG can change it) on stderr, named "etcd-client".
func etcdLogger() *zap.Logger {
	l, err := logutil.CreateDefaultZapLogger(zapcore.InfoLevel)
	if err != nil {
		return zap.NewNop()
	}
	return l.Named("etcd-client")
}

func observe(c *common, rec *timeline.Recorder, component func(string) string) *transport.Observer {
	if !c.observe {
		return nil
	}
	return transport.Observe(transport.RecorderSink{Rec: rec, Component: component})
}
