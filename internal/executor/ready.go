package executor

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// ReadySignal tells the kubelet's startup probe that the executor watches /proc: it listens on a
// TCP port of the Pod's network namespace, and the probe passes once it connects. A TCP probe is
// the kubelet's own dial; an exec probe cost a `runc exec` and a second executor process per try
// in the executor's CPU budget.
//
// It accepts every connection until closed, and the executor closes it once it has caught main:
// a connection accepted here may be one the kubelet had already given up on (its dial timed out
// on a loaded node), so the first connection cannot be taken for the probe that passed. A
// restarted executor can find main already listening on the port: the probe then passes against
// main's socket, and main is running, so Connected closes at once.
type ReadySignal struct {
	// Addr is the address to listen on, host:port.
	Addr string

	mu        sync.Mutex
	ln        net.Listener
	once      sync.Once
	connected chan struct{}
}

// Connected is closed once a client (the startup probe) has first connected, or when the port
// was already taken (see ReadySignal): kubelet may start main from then on.
func (r *ReadySignal) Connected() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connectedLocked()
}

// connectedLocked makes the channel on first use (a ReadySignal is a plain struct literal); r.mu
// is held.
func (r *ReadySignal) connectedLocked() chan struct{} {
	if r.connected == nil {
		r.connected = make(chan struct{})
	}
	return r.connected
}

// Signal starts listening and accepts connections until Close. A second Signal does nothing.
func (r *ReadySignal) Signal() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	connected := r.connectedLocked()
	if r.ln != nil || r.isConnected() {
		return nil
	}
	ln, err := net.Listen("tcp", r.Addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		r.once.Do(func() { close(connected) })
		return nil
	}
	if err != nil {
		return fmt.Errorf("listening on %s: %w", r.Addr, err)
	}
	r.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			_ = c.Close()
			r.once.Do(func() { close(connected) })
		}
	}()
	return nil
}

// isConnected reports whether Connected is closed; r.mu is held.
func (r *ReadySignal) isConnected() bool {
	select {
	case <-r.connected:
		return true
	default:
		return false
	}
}

// ListenAddr is the address listened on, "" when not listening (a port 0 in Addr is chosen by
// the kernel: tests read it here).
func (r *ReadySignal) ListenAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

// Close stops listening, freeing the port for main.
func (r *ReadySignal) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil {
		return nil
	}
	err := r.ln.Close()
	r.ln = nil
	return err
}
