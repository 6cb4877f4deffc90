// Package leaselock is a client-go resourcelock.Interface that keeps the
// leader election record in etcd the way the emulator's EtcdLeaseLock does
// (emulator/election/lock.py, emulator/election/record.py): a
// coordination.k8s.io/v1 Lease as JSON at /registry/leases/<namespace>/<name>,
// read with a one-range transaction, created with a compare on the key's
// create revision being 0 and updated with a compare on its mod revision.
package leaselock

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

// microTimeLayout is metav1.MicroTime's wire form in UTC, which is also what
// record.py's _micro_time writes.
const microTimeLayout = "2006-01-02T15:04:05.000000Z"

// Key is where the record of lease namespace/name is stored.
func Key(namespace, name string) string {
	return "/registry/leases/" + namespace + "/" + name
}

// EncodeLease is the stored value for record: byte for byte what record.py's
// LeaderElectionRecord.to_lease writes (json.dumps with sorted keys, compact
// separators, ASCII escapes; leaseDurationSeconds as a Python float).
func EncodeLease(record rl.LeaderElectionRecord, name, namespace string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":`)
	writePyString(&b, name)
	b.WriteString(`,"namespace":`)
	writePyString(&b, namespace)
	b.WriteString(`},"spec":{"acquireTime":`)
	writePyString(&b, microTime(record.AcquireTime))
	b.WriteString(`,"holderIdentity":`)
	writePyString(&b, record.HolderIdentity)
	b.WriteString(`,"leaseDurationSeconds":`)
	b.WriteString(strconv.Itoa(record.LeaseDurationSeconds))
	b.WriteString(`.0,"leaseTransitions":`)
	b.WriteString(strconv.Itoa(record.LeaderTransitions))
	b.WriteString(`,"renewTime":`)
	writePyString(&b, microTime(record.RenewTime))
	b.WriteString(`}}`)
	return b.Bytes()
}

// DecodeLease reads a stored Lease (as record.py's from_lease does: spec with
// holderIdentity, leaseDurationSeconds, acquireTime, renewTime and
// leaseTransitions, all required); the error says what is wrong.
func DecodeLease(raw []byte) (*rl.LeaderElectionRecord, error) {
	var lease struct {
		Spec *struct {
			HolderIdentity       *string  `json:"holderIdentity"`
			LeaseDurationSeconds *float64 `json:"leaseDurationSeconds"`
			AcquireTime          *string  `json:"acquireTime"`
			RenewTime            *string  `json:"renewTime"`
			LeaseTransitions     *float64 `json:"leaseTransitions"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &lease); err != nil {
		return nil, fmt.Errorf("not a Lease record: %w", err)
	}
	s := lease.Spec
	switch {
	case s == nil:
		return nil, fmt.Errorf("not a Lease record: no spec")
	case s.HolderIdentity == nil:
		return nil, fmt.Errorf("not a Lease record: no spec.holderIdentity")
	case s.LeaseDurationSeconds == nil:
		return nil, fmt.Errorf("not a Lease record: no spec.leaseDurationSeconds")
	case s.AcquireTime == nil:
		return nil, fmt.Errorf("not a Lease record: no spec.acquireTime")
	case s.RenewTime == nil:
		return nil, fmt.Errorf("not a Lease record: no spec.renewTime")
	case s.LeaseTransitions == nil:
		return nil, fmt.Errorf("not a Lease record: no spec.leaseTransitions")
	}
	acquired, err := time.Parse(time.RFC3339Nano, *s.AcquireTime)
	if err != nil {
		return nil, fmt.Errorf("not a Lease record: spec.acquireTime: %w", err)
	}
	renewed, err := time.Parse(time.RFC3339Nano, *s.RenewTime)
	if err != nil {
		return nil, fmt.Errorf("not a Lease record: spec.renewTime: %w", err)
	}
	return &rl.LeaderElectionRecord{
		HolderIdentity:       *s.HolderIdentity,
		LeaseDurationSeconds: int(*s.LeaseDurationSeconds),
		AcquireTime:          metav1.NewTime(acquired),
		RenewTime:            metav1.NewTime(renewed),
		LeaderTransitions:    int(*s.LeaseTransitions),
	}, nil
}

func microTime(t metav1.Time) string {
	if t.IsZero() {
		// client-go's release writes zero times; record.py would write the epoch.
		return time.Unix(0, 0).UTC().Format(microTimeLayout)
	}
	return t.UTC().Format(microTimeLayout)
}

// writePyString writes s as Python's json.dumps (ensure_ascii) does: only
// '"', '\\' and control characters escaped among ASCII, everything else as
// \uXXXX (UTF-16, surrogate pairs above the BMP).
func writePyString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(b, `\u%04x`, r)
		case r < 0x80:
			b.WriteRune(r)
		case r > math.MaxUint16:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(b, `\u%04x\u%04x`, hi, lo)
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
}
