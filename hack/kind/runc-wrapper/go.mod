// A separate module so the operator's `go vet ./...` and `go test ./...` never see this host tool,
// and so it builds with the standard library alone.
module pnsflow.dev/hack/runc-wrapper

go 1.26
