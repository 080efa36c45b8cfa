// Package bench is the fan-out benchmark (`make bench`): one WorkflowRun of N items on envtest
// (a real kube-apiserver and etcd, no kubelet), with the manager built by manager.New from its
// shipped defaults and the benchmark playing the executors. Its files carry the `bench` build
// tag, so plain `go test ./...` (`make test`) never runs it; see fanout_test.go.
package bench
