package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// waitReady dials addr, as the kubelet's TCP probe does, until it connects or ctx ends.
func waitReady(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return errors.Join(fmt.Errorf("the executor is not ready on %s", addr), ctx.Err(), err)
		}
	}
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestReadySignalPassesEveryProbeUntilClosedThenFreesThePort(t *testing.T) {
	r := &ReadySignal{Addr: "127.0.0.1:0"}
	connected := r.Connected()
	if err := r.Signal(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	addr := r.ListenAddr()
	if addr == "" {
		t.Fatal("not listening after Signal")
	}
	select {
	case <-connected:
		t.Fatal("Connected closed before anyone connected")
	default:
	}
	if err := r.Signal(); err != nil || r.ListenAddr() != addr {
		t.Errorf("a second Signal = %v listening on %q, want nil on %q", err, r.ListenAddr(), addr)
	}

	if err := waitReady(testCtx(t), addr); err != nil {
		t.Fatalf("the probe could not connect: %v", err)
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("Connected not closed after the probe connected")
	}
	// The kubelet may have given up on the first connection (its dial timed out): its next
	// probe must pass too, or main never starts.
	for i := range 3 {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("probe %d after the first was refused: %v", i+2, err)
		}
		_ = c.Close()
	}

	// Once main is caught the executor closes it, and main may listen on the same port.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the port is still taken after Close: %v", err)
	}
	_ = ln.Close()
	if err := r.Signal(); err != nil || r.ListenAddr() != "" {
		t.Errorf("Signal after the probe passed = %v listening on %q; want nil, not listening", err, r.ListenAddr())
	}
}

func TestReadySignalOnAPortMainHoldsIsReadyAtOnce(t *testing.T) {
	mains, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mains.Close()
	r := &ReadySignal{Addr: mains.Addr().String()}
	if err := r.Signal(); err != nil {
		t.Fatalf("Signal on a port main listens on = %v; want nil (the probe passes against main)", err)
	}
	select {
	case <-r.Connected():
	default:
		t.Fatal("Connected not closed: a restarted executor would hold its finder until the gate's timeout")
	}
}

func TestReadySignalRefusesAnAddressItCannotListenOn(t *testing.T) {
	if err := (&ReadySignal{Addr: "256.0.0.1:1"}).Signal(); err == nil {
		t.Fatal("Signal on an impossible address succeeded")
	}
}
