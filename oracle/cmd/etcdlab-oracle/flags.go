package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// seconds is a duration flag that takes Go syntax ("1.5s", "200ms") or a
// plain number of seconds ("1.5"), like the Python side's options.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return "0s" // the zero value: the flag package hides a zero default
	}
	return s.d.String()
}

func (s seconds) Set(text string) error {
	if f, err := strconv.ParseFloat(text, 64); err == nil {
		*s.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return fmt.Errorf("not a duration (e.g. 2s, 500ms or 2.5)")
	}
	*s.d = d
	return nil
}

// list is a comma-separated list flag.
type list struct{ items *[]string }

func (l list) String() string {
	if l.items == nil {
		return ""
	}
	return strings.Join(*l.items, ",")
}

func (l list) Set(text string) error {
	var items []string
	for _, item := range strings.Split(text, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return fmt.Errorf("empty item in %q", text)
		}
		items = append(items, item)
	}
	*l.items = items
	return nil
}

// usageError is bad input: one line naming the flag, exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func flagErr(name, format string, args ...any) error {
	return usageError{fmt.Sprintf("--%s: %s", name, fmt.Sprintf(format, args...))}
}

// validName: a lease, resource or component name usable in an etcd key.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}
