package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ReadySignal tells the startup probe that the executor watches /proc: it listens on an
// abstract unix socket (in the Pod's network namespace; no filesystem needed), and WaitReady
// returns once it can connect.
type ReadySignal struct {
	// Addr is the socket's address; a leading '@' makes it abstract.
	Addr string

	mu        sync.Mutex
	ln        net.Listener
	once      sync.Once
	connected chan struct{}
}

// Connected is closed once a client (the startup probe) has connected.
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

// Signal starts listening and accepting. Connecting is all a client does, so each connection
// is closed at once.
func (r *ReadySignal) Signal() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		return nil
	}
	ln, err := net.Listen("unix", r.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", r.Addr, err)
	}
	r.ln = ln
	connected := r.connectedLocked()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			r.once.Do(func() { close(connected) })
			_ = c.Close()
		}
	}()
	return nil
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

// WaitReady dials addr until it connects or ctx ends.
func WaitReady(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", addr)
		if err == nil {
			return c.Close()
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return errors.Join(fmt.Errorf("the executor is not ready on %s", addr), ctx.Err(), err)
		}
	}
}
