package apiprofile

import (
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stack []string // leaf first
		want  string
	}{
		{"GC worker", []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, "GC"},
		{"GC assist inside a JSON decode is GC", []string{"runtime.gcDrainN", "runtime.gcAssistAlloc", "runtime.mallocgc",
			"encoding/json.(*decodeState).object", "k8s.io/apiserver/pkg/endpoints/handlers.createHandler.func1"}, "GC"},
		{"allocation inside a JSON decode is JSON", []string{"runtime.mallocgc", "runtime.newobject",
			"sigs.k8s.io/json/internal/golang/encoding/json.(*decodeState).object",
			"k8s.io/apimachinery/pkg/runtime/serializer/json.(*Serializer).Decode"}, "JSON"},
		{"encoding an event for a watcher is watch, not JSON", []string{"encoding/json.(*encodeState).marshal",
			"k8s.io/apimachinery/pkg/runtime/serializer/json.(*Serializer).Encode",
			"k8s.io/apiserver/pkg/storage/cacher.(*cachingObject).CacheEncode",
			"k8s.io/apiserver/pkg/endpoints/handlers.(*WatchServer).HandleHTTP"}, "watch (cache, encoding for watchers)"},
		{"dispatching to watchers", []string{"runtime.mapaccess2", "k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatchEvent"},
			"watch (cache, encoding for watchers)"},
		{"CEL under CRD validation is CEL", []string{"github.com/google/cel-go/interpreter.(*evalOr).Eval",
			"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel.(*Validator).Validate",
			"k8s.io/apiextensions-apiserver/pkg/apiserver/validation.ValidateCustomResource"}, "CEL validation"},
		{"OpenAPI schema validation", []string{"k8s.io/kube-openapi/pkg/validation/validate.(*objectValidator).Validate",
			"k8s.io/apiextensions-apiserver/pkg/registry/customresource.customResourceStrategy.Validate"},
			"schema validation (OpenAPI, built-in)"},
		{"Pod validation", []string{"k8s.io/kubernetes/pkg/apis/core/validation.ValidatePodCreate"},
			"schema validation (OpenAPI, built-in)"},
		{"admission", []string{"k8s.io/kubernetes/plugin/pkg/admission/serviceaccount.(*Plugin).Admit",
			"k8s.io/apiserver/pkg/admission.chainAdmissionHandler.Admit"}, "admission"},
		{"managed fields", []string{"sigs.k8s.io/structured-merge-diff/v6/typed.(*TypedValue).Merge",
			"k8s.io/apimachinery/pkg/util/managedfields/internal.(*structuredMergeManager).Update"}, "managed fields"},
		{"RBAC", []string{"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac.(*RBACAuthorizer).Authorize",
			"k8s.io/apiserver/pkg/authorization/union.unionAuthzHandler.Authorize",
			"k8s.io/apiserver/pkg/endpoints/filters.withAuthorization.func1"}, "authentication/authorization"},
		{"the handler chain alone is not auth", []string{"runtime.memmove",
			"k8s.io/apiserver/pkg/endpoints/filters.withAuthorization.func1",
			"k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1"}, Other},
		{"storing a Pod: protobuf before etcd", []string{"k8s.io/api/core/v1.(*PodSpec).MarshalToSizedBuffer",
			"k8s.io/apimachinery/pkg/runtime/serializer/protobuf.(*Serializer).doEncode",
			"k8s.io/apiserver/pkg/storage/etcd3.(*store).Create"}, "protobuf"},
		{"etcd client", []string{"google.golang.org/grpc/internal/transport.(*http2Client).Write",
			"go.etcd.io/etcd/client/v3.(*kv).Do", "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create",
			"k8s.io/apiserver/pkg/storage/cacher.(*Cacher).Create"}, "etcd client"},
		{"TLS", []string{"crypto/internal/fips140/aes/gcm.seal", "crypto/tls.(*Conn).Write"}, "TLS, HTTP/2"},
		{"scheduler", []string{"runtime.findRunnable", "runtime.schedule"}, Other},
		{"the profile's own encoding", []string{"compress/flate.(*compressor).deflate", "runtime/pprof.(*profileBuilder).flush",
			"net/http/pprof.Profile"}, "profiling itself"},
		{"audit log", []string{"encoding/json.Marshal", "k8s.io/apiserver/pkg/audit.(*AuditContext).ProcessEventStage",
			"k8s.io/apiserver/pkg/endpoints/filters.withAudit.func1"}, "audit log"},
		{"priority and fairness runs the request inside Finish", []string{"k8s.io/kubernetes/pkg/apis/core/validation.ValidatePodCreate",
			"k8s.io/apiserver/pkg/util/flowcontrol/fairqueuing/queueset.(*request).Finish.func1"}, "schema validation (OpenAPI, built-in)"},
		{"empty", nil, Other},
	} {
		if got := Classify(tc.stack); got != tc.want {
			t.Errorf("%s: Classify = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestBucketsAreNamedOnce(t *testing.T) {
	seen := map[string]bool{Other: true}
	for _, b := range Buckets {
		if seen[b.Name] {
			t.Errorf("bucket %q twice (or named like the fallback)", b.Name)
		}
		seen[b.Name] = true
		if len(b.Prefixes) == 0 {
			t.Errorf("bucket %q matches nothing", b.Name)
		}
	}
}

// A real `go tool pprof -traces` output, shortened.
const traces = `File: kube-apiserver
Type: cpu
Time: 2026-11-30 18:52:33 UTC
Duration: 2s, Total samples = 1.53s (76.50%)
-----------+-------------------------------------------------------
      20ms   runtime.memclrNoHeapPointers
             internal/runtime/maps.NewEmptyMap (inline)
             encoding/json.(*decodeState).object
-----------+-------------------------------------------------------
     bytes:  64
     1.50s   runtime.gcDrain
             runtime.gcBgMarkWorker
-----------+-------------------------------------------------------
      10ms   k8s.io/kubernetes/pkg/apis/core/validation.ValidatePodSpec
-----------+-------------------------------------------------------
`

func TestParseTraces(t *testing.T) {
	got, err := ParseTraces(strings.NewReader(traces))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d samples, want 3: %+v", len(got), got)
	}
	if got[0].CPU != 20*time.Millisecond || len(got[0].Stack) != 3 || got[0].Stack[0] != "runtime.memclrNoHeapPointers" ||
		got[0].Stack[1] != "internal/runtime/maps.NewEmptyMap" {
		t.Errorf("first sample: %+v", got[0])
	}
	if got[1].CPU != 1500*time.Millisecond || len(got[1].Stack) != 2 {
		t.Errorf("second sample (after a label line): %+v", got[1])
	}

	shares := Summarize(got)
	if len(shares) != 3 || shares[0].Name != "GC" || shares[0].CPU != 1500*time.Millisecond {
		t.Fatalf("Summarize: %+v", shares)
	}
	var sum float64
	for _, s := range shares {
		sum += s.Fraction
	}
	if sum < 0.999 || sum > 1.001 {
		t.Errorf("fractions add up to %f", sum)
	}
	if out := Render(shares, 4*time.Millisecond); !strings.Contains(out, "3.92 ms per step") || !strings.Contains(out, "98.0%") {
		t.Errorf("Render:\n%s", out)
	}
}

func TestParseTracesRejects(t *testing.T) {
	for name, in := range map[string]string{
		"not traces":  "Showing nodes accounting for 270ms\n      flat  flat%\n",
		"a bad value": "-----------+----\n      2 parsecs   main.main\n",
	} {
		if _, err := ParseTraces(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSummarizeTies(t *testing.T) {
	a := Summarize([]Sample{{Stack: []string{"encoding/json.Marshal"}, CPU: time.Millisecond},
		{Stack: []string{"runtime.gcDrain"}, CPU: time.Millisecond}})
	if len(a) != 2 || a[0].Name != "GC" || a[1].Name != "JSON" {
		t.Errorf("ties are not in name order: %+v", a)
	}
}
