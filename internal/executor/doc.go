// Package executor is the PNS executor: the sidecar that finds main's process in the Pod's shared
// process namespace, holds main's root filesystem open, waits for main to exit, takes main's exit
// code from the Pod's status, collects main's outputs and patches the StepRun's status.
//
// Each step is a small type behind a small interface (Finder, Securer, Waiter, PodStatus,
// OutputCollector, ResultReader, StatusReporter, StdinWriter) and Executor.Run wires them, so every
// step is tested alone: the /proc and file-descriptor steps on real processes, the API steps
// against a fake API server, and Run itself with fakes.
package executor
