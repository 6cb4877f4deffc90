package leaselock

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Written by the Python side (emulator/election/record.py at the commit this
// oracle was added on):
//
//	LeaderElectionRecord("candidate-0", 15.0, 1767225600.123456, 1767225612.5, 3)
//	    .to_lease("kube-scheduler", "kube-system")
const pythonLease = `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"kube-scheduler","namespace":"kube-system"},"spec":{"acquireTime":"2026-01-01T00:00:00.123456Z","holderIdentity":"candidate-0","leaseDurationSeconds":15.0,"leaseTransitions":3,"renewTime":"2026-01-01T00:00:12.500000Z"}}`

// LeaderElectionRecord('cand "é" \\ \n 𝄞', 15, 1767225600.0, 1767225601.000001, 0)
//
//	.to_lease("etcdlab-controller", "kube-system")
//
// (an int duration, as Kubernetes itself writes it, and every kind of escape).
const pythonOddLease = `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"etcdlab-controller","namespace":"kube-system"},"spec":{"acquireTime":"2026-01-01T00:00:00.000000Z","holderIdentity":"cand \"\u00e9\" \\ \n \ud834\udd1e","leaseDurationSeconds":15,"leaseTransitions":0,"renewTime":"2026-01-01T00:00:01.000001Z"}}`

func at(sec int64, usec int64) metav1.Time {
	return metav1.NewTime(time.Unix(sec, usec*1000))
}

func TestDecodesWhatPythonWrites(t *testing.T) {
	got, err := DecodeLease([]byte(pythonLease))
	if err != nil {
		t.Fatal(err)
	}
	want := rl.LeaderElectionRecord{
		HolderIdentity:       "candidate-0",
		LeaseDurationSeconds: 15,
		AcquireTime:          at(1767225600, 123456),
		RenewTime:            at(1767225612, 500000),
		LeaderTransitions:    3,
	}
	if !got.AcquireTime.Equal(&want.AcquireTime) || !got.RenewTime.Equal(&want.RenewTime) {
		t.Errorf("times: got %v / %v, want %v / %v", got.AcquireTime, got.RenewTime, want.AcquireTime, want.RenewTime)
	}
	got.AcquireTime, got.RenewTime = want.AcquireTime, want.RenewTime
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
}

func TestEncodesWhatPythonWrites(t *testing.T) {
	record := rl.LeaderElectionRecord{
		HolderIdentity:       "candidate-0",
		LeaseDurationSeconds: 15,
		AcquireTime:          at(1767225600, 123456),
		RenewTime:            at(1767225612, 500000),
		LeaderTransitions:    3,
	}
	if got := EncodeLease(record, "kube-scheduler", "kube-system"); string(got) != pythonLease {
		t.Errorf("\n got %s\nwant %s", got, pythonLease)
	}
}

func TestRoundTripWithEscapes(t *testing.T) {
	record, err := DecodeLease([]byte(pythonOddLease))
	if err != nil {
		t.Fatal(err)
	}
	if record.HolderIdentity != "cand \"é\" \\ \n 𝄞" || record.LeaseDurationSeconds != 15 {
		t.Fatalf("decoded %+v", *record)
	}
	encoded := EncodeLease(*record, "etcdlab-controller", "kube-system")
	// The one difference: the oracle always writes the duration as the
	// emulator's float config does ("15.0"); this literal has Python's int.
	want := bytes.Replace([]byte(pythonOddLease), []byte(`"leaseDurationSeconds":15,`), []byte(`"leaseDurationSeconds":15.0,`), 1)
	if !bytes.Equal(encoded, want) {
		t.Errorf("\n got %s\nwant %s", encoded, want)
	}
	if !json.Valid(encoded) {
		t.Error("not valid JSON")
	}
}

func TestRejectsWhatIsNotALease(t *testing.T) {
	for _, raw := range []string{
		`not json`,
		`{"spec":{}}`,
		`{"kind":"Lease"}`,
		`{"spec":{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"yesterday","renewTime":"2026-01-01T00:00:00.000000Z","leaseTransitions":0}}`,
	} {
		if _, err := DecodeLease([]byte(raw)); err == nil {
			t.Errorf("DecodeLease(%s) accepted it", raw)
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	for renew, want := range map[time.Duration]time.Duration{
		10 * time.Second:        5 * time.Second,
		time.Second:             time.Second,
		1500 * time.Millisecond: time.Second,
	} {
		if got := RequestTimeout(renew); got != want {
			t.Errorf("RequestTimeout(%v) = %v, want %v", renew, got, want)
		}
	}
}
