// Package apiprofile sorts a kube-apiserver CPU profile into a few kinds of work (JSON,
// protobuf, CEL, schema validation, admission, watch, etcd, auth, GC, ...), so the fan-out
// benchmark can say where the API server's CPU per step goes. It reads the text of
// `go tool pprof -traces` rather than the profile itself: the pprof profile package is not one
// of the module's direct dependencies, and go tool pprof also merges the chunks a long profile
// is collected in.
package apiprofile

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Sample is one stack of a CPU profile and the CPU time spent in it.
type Sample struct {
	// Stack is leaf first: Stack[0] is the function that was running.
	Stack []string
	CPU   time.Duration
}

// Bucket is a kind of work: a sample belongs to it when any frame of its stack starts with one
// of Prefixes.
type Bucket struct {
	Name     string
	Prefixes []string
}

// Other is the bucket of samples no Bucket matched.
const Other = "other"

// Buckets are tried in order and the first match wins, so the order says what a sample "is"
// when its stack holds several kinds of work: GC assists and write barriers count as GC
// wherever they happen; encoding an event for a watcher counts as watch, not as JSON or
// protobuf; CEL called by validation counts as CEL; JSON and protobuf are what is left of
// decoding and encoding once those are taken (requests, responses, and the objects stored in
// etcd: custom resources as JSON, built-in ones as protobuf).
//
// Prefixes name the code doing the work, never the handler chain around every request
// (k8s.io/apiserver/pkg/endpoints/filters, priority and fairness, whose queueset runs the
// request inside its Finish, the generic registry, the cacher's pass-through
// Create/Get/GuaranteedUpdate), which would swallow every sample. So "other" is that chain's
// own work: routing, priority and fairness, metrics, tracing, conversion and deep copies.
var Buckets = []Bucket{
	// The profile's own cost (encoding each chunk), so it is not mistaken for the API server's.
	{"profiling itself", []string{"runtime/pprof.", "net/http/pprof.", "runtime.sigprof"}},
	{"GC", []string{"runtime.gc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.sweepone", "runtime.markroot",
		"runtime.scanobject", "runtime.wbBuf", "runtime.(*gcWork)", "runtime.GC"}},
	{"watch (cache, encoding for watchers)", []string{
		"k8s.io/apiserver/pkg/storage/cacher.(*cacheWatcher)",
		"k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatch",
		"k8s.io/apiserver/pkg/storage/cacher.(*Cacher).processEvent",
		"k8s.io/apiserver/pkg/storage/cacher.(*watchCache)",
		"k8s.io/apiserver/pkg/storage/cacher.(*cachingObject)",
		"k8s.io/apiserver/pkg/storage/cacher.(*Cacher).startCaching",
		"k8s.io/apiserver/pkg/endpoints/handlers.(*WatchServer)",
		"k8s.io/apiserver/pkg/endpoints/handlers.serveWatch",
		"k8s.io/apiserver/pkg/endpoints/handlers.(*watchEncoder)",
		"k8s.io/apimachinery/pkg/runtime/serializer/streaming",
	}},
	{"CEL validation", []string{"github.com/google/cel-go", "k8s.io/apiserver/pkg/cel",
		"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel", "k8s.io/apiserver/pkg/admission/plugin/cel",
		"k8s.io/apiserver/pkg/admission/plugin/policy"}},
	{"admission", []string{"k8s.io/apiserver/pkg/admission", "k8s.io/kubernetes/plugin/pkg/admission"}},
	{"schema validation (OpenAPI, built-in)", []string{"k8s.io/kube-openapi/pkg/validation",
		"k8s.io/apiextensions-apiserver/pkg/apiserver/validation", "k8s.io/apiextensions-apiserver/pkg/apiserver/schema",
		"k8s.io/kubernetes/pkg/apis/core/validation", "k8s.io/apimachinery/pkg/api/validation",
		"k8s.io/apimachinery/pkg/util/validation", "k8s.io/apimachinery/pkg/apis/meta/v1/validation"}},
	{"managed fields", []string{"sigs.k8s.io/structured-merge-diff", "k8s.io/apimachinery/pkg/util/managedfields",
		"k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager"}},
	// Writing the audit log the benchmark counts writes from: its cost, not the API server's.
	{"audit log", []string{"k8s.io/apiserver/pkg/audit", "k8s.io/apiserver/plugin/pkg/audit"}},
	{"authentication/authorization", []string{"k8s.io/apiserver/pkg/authentication", "k8s.io/apiserver/pkg/authorization",
		"k8s.io/kubernetes/plugin/pkg/auth", "k8s.io/kubernetes/pkg/kubeapiserver/authorizer", "crypto/x509."}},
	{"JSON", []string{"encoding/json.", "sigs.k8s.io/json", "k8s.io/apimachinery/pkg/runtime/serializer/json",
		"github.com/json-iterator", "k8s.io/apimachinery/pkg/util/json", "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured.(*Unstructured).UnmarshalJSON",
		"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured.(*Unstructured).MarshalJSON", "k8s.io/apimachinery/pkg/apis/meta/v1/unstructured.UnstructuredJSONScheme"}},
	{"protobuf", []string{"k8s.io/apimachinery/pkg/runtime/serializer/protobuf", "github.com/gogo/protobuf",
		"google.golang.org/protobuf", "github.com/golang/protobuf"}},
	{"etcd client", []string{"go.etcd.io/etcd/client", "go.etcd.io/etcd/api", "k8s.io/apiserver/pkg/storage/etcd3", "google.golang.org/grpc"}},
	{"TLS, HTTP/2", []string{"crypto/", "vendor/golang.org/x/crypto", "golang.org/x/net/http2", "net/http.(*http2", "net/http.(*conn)"}},
}

// Classify names the bucket of one stack (leaf first).
func Classify(stack []string) string {
	for _, b := range Buckets {
		for _, frame := range stack {
			for _, p := range b.Prefixes {
				if strings.HasPrefix(frame, p) {
					return b.Name
				}
			}
		}
	}
	return Other
}

// Share is one bucket's part of a profile.
type Share struct {
	Name     string
	CPU      time.Duration
	Fraction float64
}

// Summarize sums the samples by bucket, largest first (name order on ties, so output is stable);
// empty buckets are left out.
func Summarize(samples []Sample) []Share {
	sums := map[string]time.Duration{}
	var total time.Duration
	for _, s := range samples {
		sums[Classify(s.Stack)] += s.CPU
		total += s.CPU
	}
	out := make([]Share, 0, len(sums))
	for name, cpu := range sums {
		if cpu == 0 {
			continue
		}
		out = append(out, Share{Name: name, CPU: cpu, Fraction: float64(cpu) / float64(total)})
	}
	slices.SortFunc(out, func(a, b Share) int {
		if c := cmp.Compare(b.CPU, a.CPU); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// ParseTraces reads the output of `go tool pprof -traces` of a CPU profile: a header, then
// stacks separated by lines of dashes, each starting with its value ("20ms", "1.50s") before
// the leaf frame, one frame per line, inlined ones marked " (inline)".
func ParseTraces(r io.Reader) ([]Sample, error) {
	var (
		out     []Sample
		cur     *Sample
		started bool
	)
	flush := func() {
		if cur != nil && len(cur.Stack) > 0 {
			out = append(out, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for line := 0; sc.Scan(); line++ {
		text := sc.Text()
		if strings.HasPrefix(text, "-----------+") {
			flush()
			started = true
			continue
		}
		if !started || strings.TrimSpace(text) == "" {
			continue
		}
		frame := strings.TrimSpace(text)
		if cur == nil {
			value, rest, _ := strings.Cut(frame, " ")
			if strings.HasSuffix(value, ":") {
				continue // a label of the stack ("bytes:  [64]"), before its value line
			}
			cpu, err := parseValue(value)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line+1, err)
			}
			cur = &Sample{CPU: cpu}
			frame = strings.TrimSpace(rest)
		}
		if frame != "" {
			cur.Stack = append(cur.Stack, strings.TrimSuffix(frame, " (inline)"))
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !started {
		return nil, fmt.Errorf("no stacks: not the output of go tool pprof -traces")
	}
	return out, nil
}

// parseValue reads pprof's scaled durations: ns, us, ms, s, mins, hrs.
func parseValue(v string) (time.Duration, error) {
	v = strings.NewReplacer("mins", "m", "hrs", "h").Replace(v)
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("value %q: %w", v, err)
	}
	return d, nil
}

// Render prints the shares as a table of name, CPU and percent and, when perStep > 0, each
// share of perStep: a profile may cover only part of what it is compared with (the fan-out's
// last second is not profiled), so its fractions, not its seconds, are spread over the
// measured CPU per step.
func Render(shares []Share, perStep time.Duration) string {
	var b strings.Builder
	for _, s := range shares {
		fmt.Fprintf(&b, "  %-40s %8.2f s %5.1f%%", s.Name, s.CPU.Seconds(), 100*s.Fraction)
		if perStep > 0 {
			fmt.Fprintf(&b, "  %.2f ms per step", s.Fraction*float64(perStep.Microseconds())/1000)
		}
		b.WriteString("\n")
	}
	return b.String()
}
