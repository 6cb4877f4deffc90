package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBadInputIsOneLineNamingTheFlagAndExit2(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "a COMMAND is required"},
		{[]string{"dance"}, `unknown command "dance"`},
		{[]string{"apiserver"}, "--endpoints: required"},
		{[]string{"apiserver", "--endpoints", "127.0.0.1"}, `--endpoints: "127.0.0.1" is not HOST:PORT`},
		{[]string{"apiserver", "--endpoints", "a:1,,b:2"}, "--endpoints:"},
		{[]string{"apiserver", "--endpoints", "a:1", "--probe-period", "soon"}, "--probe-period:"},
		{[]string{"apiserver", "--endpoints", "a:1", "--workers", "0"}, "--workers: at least 1"},
		{[]string{"apiserver", "--endpoints", "a:1", "--resources", "pods,a/b"}, "--resources:"},
		{[]string{"apiserver", "--endpoints", "a:1", "--prefix", "registry"}, "--prefix:"},
		{[]string{"elect", "--endpoints", "a:1", "--lease-duration", "10s"}, "--lease-duration: 10s must be greater than --renew-deadline 10s"},
		{[]string{"elect", "--endpoints", "a:1", "--retry-period", "9s"}, "--renew-deadline:"},
		{[]string{"elect", "--endpoints", "a:1", "--candidates", "0"}, "--candidates: at least 1"},
		{[]string{"elect", "--endpoints", "a:1", "--shared-clients", "-1"}, "--shared-clients: must not be negative"},
		{[]string{"elect", "--endpoints", "a:1", "--nope"}, "--nope: no such flag"},
		{[]string{"elect", "--endpoints", "a:1", "--candidates"}, "--candidates: needs a value"},
		{[]string{"elect", "--endpoints", "a:1", "stray"}, `unexpected argument "stray"`},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", c.args, code)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		last := lines[len(lines)-1]
		if !strings.Contains(last, c.want) {
			t.Errorf("%v: stderr ends %q, want it to contain %q", c.args, last, c.want)
		}
		if c.args != nil && len(lines) != 1 {
			t.Errorf("%v: %d lines on stderr, want 1:\n%s", c.args, len(lines), stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: wrote to stdout: %s", c.args, stdout.String())
		}
	}
}

func TestHelpTeachesAndExits0(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"apiserver", "-h"}, {"elect", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		if !strings.Contains(stdout.String(), "usage: etcdlab-oracle") {
			t.Errorf("%v: no usage on stdout", args)
		}
	}
	var stdout, stderr bytes.Buffer
	run([]string{"elect", "-h"}, &stdout, &stderr)
	for _, flag := range []string{"-lease-duration", "-renew-deadline", "-retry-period", "-candidates", "-start-unix", "-out"} {
		if !strings.Contains(stdout.String(), flag) {
			t.Errorf("elect -h does not mention %s", flag)
		}
	}
}

func TestSecondsTakeGoDurationsAndPlainNumbers(t *testing.T) {
	var got = map[string]string{"2": "2s", "0.25": "250ms", "1m30s": "1m30s", "200ms": "200ms"}
	for in, want := range got {
		var d = new(durationHolder)
		if err := (seconds{&d.d}).Set(in); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if d.d.String() != want {
			t.Errorf("%s -> %v, want %s", in, d.d, want)
		}
	}
}

type durationHolder struct{ d time.Duration }
