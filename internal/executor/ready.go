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
// The first connection is the probe that lets kubelet start main, so the port is closed right
// after it and main may use it too. A restarted executor can find main already listening there:
// the probe then passes against main's socket, and main is running, so Connected closes at once.
type ReadySignal struct {
	// Addr is the address to listen on, host:port.
	Addr string

	mu        sync.Mutex
	ln        net.Listener
	once      sync.Once
	connected chan struct{}
}

// Connected is closed once a client (the startup probe) has connected, or when the port was
// already taken (see ReadySignal).
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

// Signal starts listening and accepts the first connection, then stops listening. A second
// Signal does nothing.
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
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		_ = r.Close()
		_ = c.Close()
		r.once.Do(func() { close(connected) })
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

// Close stops listening.
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
