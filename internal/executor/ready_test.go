package executor

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestReadySignal(t *testing.T) {
	addr := fmt.Sprintf("@pnsflow-test-ready-%d-%d", os.Getpid(), time.Now().UnixNano())
	r := &ReadySignal{Addr: addr}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WaitReady(ctx, addr); err == nil {
		t.Fatal("WaitReady succeeded before Signal")
	}

	connected := r.Connected()
	if err := r.Signal(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case <-connected:
		t.Fatal("Connected closed before anyone connected")
	default:
	}
	if err := r.Signal(); err != nil {
		t.Errorf("a second Signal = %v, want nil", err)
	}
	for range 3 { // every hook run connects
		if err := WaitReady(testCtx(t), addr); err != nil {
			t.Fatalf("WaitReady after Signal: %v", err)
		}
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("Connected not closed after a client connected")
	}
	if err := (&ReadySignal{Addr: addr}).Signal(); err == nil {
		t.Error("a second listener on the same address should fail")
	}
}
