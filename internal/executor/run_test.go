package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// fakeCluster is the API server as the executor sees it: its Pod (list and watch, fed by the
// test), main's log, and its StepRun (get and status patches).
type fakeCluster struct {
	mu      sync.Mutex
	pod     corev1.Pod
	podRV   int
	podChg  chan struct{} // closed and replaced on every Pod change
	sr      v1alpha1.StepRun
	patches []v1alpha1.StepRunStatus
	reads   int // GETs of the StepRun
	patched chan struct{}
	log     string
}

func newFakeCluster(uid string) *fakeCluster {
	c := &fakeCluster{podChg: make(chan struct{}), patched: make(chan struct{}, 10), log: "hello from main\n"}
	c.pod = pod("1", waiting)
	c.sr.Name, c.sr.Namespace, c.sr.UID, c.sr.ResourceVersion = "sr", "ns", types.UID(uid), "1"
	c.sr.Status.Phase = v1alpha1.StepRunPending
	return c
}

func (c *fakeCluster) setMain(state corev1.ContainerState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.podRV++
	c.pod = pod(fmt.Sprint(c.podRV+1), state)
	close(c.podChg)
	c.podChg = make(chan struct{})
}

func (c *fakeCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const srPath = "/apis/workflows.pnsflow.dev/v1alpha1/namespaces/ns/stepruns/sr"
	switch {
	case r.URL.Path == "/api/v1/namespaces/ns/pods/p":
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = json.NewEncoder(w).Encode(c.pod)
	case r.URL.Path == "/api/v1/namespaces/ns/pods" && r.URL.Query().Get("watch") == "true":
		w.Header().Set("Content-Type", "application/json")
		w.(http.Flusher).Flush()
		for {
			c.mu.Lock()
			ch := c.podChg
			c.mu.Unlock()
			select {
			case <-r.Context().Done():
				return
			case <-ch:
			}
			c.mu.Lock()
			_ = json.NewEncoder(w).Encode(event("MODIFIED", c.pod))
			c.mu.Unlock()
			w.(http.Flusher).Flush()
		}
	case r.URL.Path == "/api/v1/namespaces/ns/pods/p/log":
		_, _ = io.WriteString(w, c.log)
	case r.URL.Path == srPath && r.Method == http.MethodGet:
		c.mu.Lock()
		defer c.mu.Unlock()
		c.reads++
		_ = json.NewEncoder(w).Encode(c.sr)
	case r.URL.Path == srPath+"/status" && r.Method == http.MethodPatch:
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		next, err := applyReport(&c.sr, body)
		if err != nil {
			writeStatus(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		c.sr = *next
		c.sr.ResourceVersion += "1"
		c.patches = append(c.patches, c.sr.Status)
		_ = json.NewEncoder(w).Encode(c.sr)
		c.patched <- struct{}{}
	default:
		http.NotFound(w, r)
	}
}

// The executor wired by New, against a real main process and a fake API server.
func TestNewRunEndToEnd(t *testing.T) {
	requireRoot(t)
	uid := fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	cluster := newFakeCluster(uid)
	srv := httptest.NewServer(cluster)
	defer srv.Close()

	dir := t.TempDir() // main's chroot; dir/outputs is the outputs emptyDir
	readyAddr := freeAddr(t)
	e, err := New(Options{
		MainParent: os.Getpid(), // the helper is this test's child; in a Pod main's parent shows as 0
		Config: executorconfig.Config{
			StepRun: "sr", Namespace: "ns", UID: uid, Pod: "p",
			Outputs: []executorconfig.Output{
				{Name: "image", Path: "/tmp/out"},
				{Name: "safe", Path: "/pnsflow/outputs/safe"},
			},
			Mounts: []executorconfig.Mount{{MainPath: executorconfig.OutputsDir, ExecutorPath: filepath.Join(dir, "outputs")}},
		},
		REST:      &rest.Config{Host: srv.URL},
		ReadyAddr: readyAddr,
		Log:       NewLogger(tWriter{t}, 1),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	// The startup probe passes, then the kubelet starts main.
	if err := waitReady(ctx, readyAddr); err != nil {
		t.Fatal(err)
	}
	h := startHelperIn(t, dir, []string{MarkerFor(uid)}, "-newroot", "-outputs",
		"-write", "/tmp/out=from the image filesystem",
		"-write", "/pnsflow/outputs/safe=from the outputs dir")
	cluster.setMain(running)
	select {
	case <-cluster.patched: // Running
	case <-ctx.Done():
		t.Fatal("no Running report")
	}

	h.exit(t)
	h.waitExited(t)
	cluster.setMain(terminated(0, "Completed"))

	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	cluster.mu.Lock()
	defer cluster.mu.Unlock()
	if len(cluster.patches) != 2 {
		t.Fatalf("%d status patches, want Running and the terminal one", len(cluster.patches))
	}
	if got := cluster.patches[0].Phase; got != v1alpha1.StepRunRunning {
		t.Errorf("first patch phase = %s, want Running", got)
	}
	if cluster.reads != 0 {
		t.Errorf("the StepRun was read %d times; two reports need no read", cluster.reads)
	}
	final := cluster.patches[1]
	if final.Phase != v1alpha1.StepRunSucceeded || final.ExitCode == nil || *final.ExitCode != 0 {
		t.Errorf("terminal patch = %+v", final)
	}
	want := &v1alpha1.StepRunOutputs{
		Parameters: []v1alpha1.OutputParameterValue{
			{Name: "image", Value: "from the image filesystem"},
			{Name: "safe", Value: "from the outputs dir"},
		},
		Result: ptr("hello from main\n"),
	}
	if diff := cmp.Diff(want, final.Outputs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
}

// tWriter sends the executor's JSON log lines to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
