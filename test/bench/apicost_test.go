//go:build bench

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/internal/apiprofile"
)

// The API server's cost per step, and how long the fan-out and the whole run may take.
const (
	targetAPIServerFanOutPerStep = 5 * time.Millisecond // StepRun create + Pod create
	targetSucceeded5000          = 45 * time.Second
)

// profileChunk is the length of one CPU profile request. net/http/pprof profiles for whole
// seconds and writes the profile only at the end, so the fan-out (of unknown length) is covered
// by back-to-back one-second profiles; the one still running when the last Pod appears is
// cancelled and dropped, so the profile never reaches into the executors' reports, and misses
// at most the fan-out's last second.
const profileChunk = time.Second

// apiServerProfiler collects kube-apiserver CPU profiles through /debug/pprof/profile
// (--profiling is on by default; the admin user may GET it).
type apiServerProfiler struct {
	cancel context.CancelFunc
	done   chan struct{}
	chunks []string
	err    error
}

func startAPIServerProfile(hc *http.Client, cfg *rest.Config, dir string, n int) *apiServerProfiler {
	ctx, cancel := context.WithCancel(context.Background())
	p := &apiServerProfiler{cancel: cancel, done: make(chan struct{})}
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(cfg.Host, "/"), int(profileChunk.Seconds()))
	go func() {
		defer close(p.done)
		for i := 0; ctx.Err() == nil; i++ {
			body, err := getProfile(ctx, hc, url)
			if ctx.Err() != nil {
				return // the fan-out ended while this chunk ran: drop it
			}
			if err != nil {
				p.err = err
				return
			}
			path := filepath.Join(dir, fmt.Sprintf("apiserver-fanout-%d.chunk%03d.pprof", n, i))
			if err := os.WriteFile(path, body, 0o644); err != nil {
				p.err = err
				return
			}
			p.chunks = append(p.chunks, path)
		}
	}()
	return p
}

func getProfile(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, err
}

// stop ends the profiling and returns the complete chunks.
func (p *apiServerProfiler) stop() ([]string, error) {
	p.cancel()
	<-p.done
	return p.chunks, p.err
}

// fanOutProfile is the analysed kube-apiserver profile of one N's fan-out.
type fanOutProfile struct {
	path    string
	covered time.Duration // profiled time, out of the fan-out
	shares  []apiprofile.Share
	top     string
	err     error
}

// analyseProfile merges the chunks into one profile (copied to bin/bench/apiserver-fanout.pprof
// when latest: the largest size profiled in this run), buckets its samples and keeps go tool
// pprof's top functions. It runs after all sizes, so its CPU does not land in any measured phase.
func analyseProfile(s settings, n int, chunks []string, latest bool) *fanOutProfile {
	fp := &fanOutProfile{path: filepath.Join(s.out, fmt.Sprintf("apiserver-fanout-%d.pprof", n)),
		covered: time.Duration(len(chunks)) * profileChunk}
	if len(chunks) == 0 {
		fp.err = fmt.Errorf("no complete %s profile: the fan-out was shorter", profileChunk)
		return fp
	}
	pprof := func(args ...string) ([]byte, error) {
		cmd := exec.Command("go", append([]string{"tool", "pprof"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof %s: %w: %s", args[0], err, stderr.Bytes())
		}
		return out, nil
	}
	merged, err := pprof(append([]string{"-proto"}, chunks...)...)
	if err == nil {
		err = os.WriteFile(fp.path, merged, 0o644)
	}
	if err == nil && latest {
		err = os.WriteFile(filepath.Join(s.root, "bin", "bench", "apiserver-fanout.pprof"), merged, 0o644)
	}
	if err != nil {
		fp.err = err
		return fp
	}
	for _, c := range chunks {
		_ = os.Remove(c)
	}
	traces, err := pprof("-traces", fp.path)
	if err != nil {
		fp.err = err
		return fp
	}
	samples, err := apiprofile.ParseTraces(bytes.NewReader(traces))
	if err != nil {
		fp.err = err
		return fp
	}
	fp.shares = apiprofile.Summarize(samples)
	top, err := pprof("-top", "-nodecount=12", fp.path)
	if err != nil {
		fp.err = err
		return fp
	}
	// Keep the table: drop the File/Type/Time header lines.
	if i := bytes.Index(top, []byte("      flat")); i >= 0 {
		top = top[i:]
	}
	fp.top = string(top)
	return fp
}

// profileSizes are the sizes whose fan-out gets a kube-apiserver profile: BENCH_APISERVER_PROFILE,
// comma-separated, default 5000; "none" for none.
func profileSizes() map[int]bool {
	out := map[int]bool{}
	v := envOr("BENCH_APISERVER_PROFILE", "5000")
	if v == "none" {
		return out
	}
	for f := range strings.SplitSeq(v, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err == nil {
			out[n] = true
		}
	}
	return out
}

// contentTypes sets what the in-process manager speaks to the API server (BENCH_CONTENT_TYPE):
// empty keeps controller-runtime's choice (protobuf for built-in kinds such as Pods, JSON for
// pnsflow's own), "json" makes every request and response JSON, "protobuf" is rest.Config's
// ContentType protobuf for everything (custom resources cannot be encoded in it).
func contentTypes(cfg *rest.Config, which string) (*rest.Config, error) {
	cfg = rest.CopyConfig(cfg)
	switch which {
	case "":
	case "json":
		cfg.ContentType, cfg.AcceptContentTypes = "application/json", "application/json"
	case "protobuf":
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	default:
		return nil, fmt.Errorf("BENCH_CONTENT_TYPE: %q is none of json, protobuf", which)
	}
	return cfg, nil
}

// phaseCPU is each process's CPU in the three phases of a run: the fan-out (create → all Pods),
// the executors' reports (all Pods → Succeeded), and the whole life (create → Succeeded).
type phaseCPU struct {
	fanOut, reports, life map[string]time.Duration
}

func newPhaseCPU(before, atPods, atSucceeded map[string]time.Duration) phaseCPU {
	p := phaseCPU{map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}}
	for k := range before {
		p.fanOut[k] = atPods[k] - before[k]
		p.reports[k] = atSucceeded[k] - atPods[k]
		p.life[k] = atSucceeded[k] - before[k]
	}
	return p
}

func msPerStep(d time.Duration, n int) string {
	return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000/float64(n))
}

// costRow is one line of the API server cost table: per step, fan-out / reports / whole life.
func (r *result) costRow() string {
	per := func(name string) string {
		if _, ok := r.phases.life[name]; !ok {
			return "–"
		}
		return fmt.Sprintf("%s / %s / %s", msPerStep(r.phases.fanOut[name], r.n), msPerStep(r.phases.reports[name], r.n),
			msPerStep(r.phases.life[name], r.n))
	}
	mgr := "manager"
	if _, ok := r.phases.life[mgr]; !ok {
		mgr = "manager+benchmark"
	}
	return fmt.Sprintf("| %d | %s | %s | %s | %s | %s |", r.n, secs(r.pods), secs(r.succeeded), per("kube-apiserver"), per("etcd"), per(mgr))
}

// renderCost is the API server cost section of the report: the table, the targets and the
// profiles' buckets.
func renderCost(s settings, results []*result) string {
	var b strings.Builder
	b.WriteString("\nAPI server cost per step (CPU ms per item: fan-out / executor reports / whole life):\n\n")
	if s.contentType != "" {
		fmt.Fprintf(&b, "The manager's client: BENCH_CONTENT_TYPE=%s.\n\n", s.contentType)
	}
	fmt.Fprintf(&b, "| N | Pods ready (target: %s at 1000, %s at 5000) | Succeeded (target: %s at 5000) | kube-apiserver (target: fan-out ≤ %.1f) | etcd | manager |\n",
		secs(targetPods1000), secs(targetPods5000), secs(targetSucceeded5000), float64(targetAPIServerFanOutPerStep.Microseconds())/1000)
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range results {
		b.WriteString(r.costRow() + "\n")
	}
	b.WriteString("\nFan-out: create → all Pods exist; reports: → the run Succeeded (the benchmark's executors report\n" +
		"Running and Succeeded for every item); whole life: create → Succeeded. From /proc/<pid>/stat (10 ms ticks).\n")
	for _, r := range results {
		if r.profile == nil {
			continue
		}
		p := r.profile
		fmt.Fprintf(&b, "\nkube-apiserver CPU profile of the N=%d fan-out (%s of %s profiled; per step: its share of the measured CPU per step): %s\n", r.n, p.covered, secs(r.pods), p.path)
		if p.err != nil {
			fmt.Fprintf(&b, "  not analysed: %v\n", p.err)
			continue
		}
		b.WriteString(apiprofile.Render(p.shares, r.phases.fanOut["kube-apiserver"]/time.Duration(r.n)))
		b.WriteString("\n" + p.top)
	}
	return b.String()
}

// checkCost adds the API server and time targets.
func checkCost(r *result, check func(ok bool, format string, args ...any)) {
	fan := r.phases.fanOut["kube-apiserver"]
	check(fan <= targetAPIServerFanOutPerStep*time.Duration(r.n), "N=%d: kube-apiserver CPU in the fan-out %s ms per step (target ≤ %.1f)",
		r.n, msPerStep(fan, r.n), float64(targetAPIServerFanOutPerStep.Microseconds())/1000)
	if r.n == 5000 {
		check(r.succeeded <= targetSucceeded5000, "N=5000: Succeeded %s after create (target ≤ %s)", secs(r.succeeded), secs(targetSucceeded5000))
	}
}
