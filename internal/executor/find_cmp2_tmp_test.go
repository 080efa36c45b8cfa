package executor

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

func TestFindGapsTmp(t *testing.T) {
	if !inPIDNamespace(t) {
		return
	}
	var looks []time.Time
	dbgLook = func(n time.Time) { looks = append(looks, n) }
	f := testFinder(newMarker())
	f.noThreadPidfds = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Find(ctx, nil); close(done) }()
	time.Sleep(50 * time.Millisecond)
	startUnmarked(t, "/bin/sleep", "10")
	time.Sleep(1 * time.Second)
	cancel()
	<-done
	var gaps []time.Duration
	for i := 1; i < len(looks); i++ {
		gaps = append(gaps, looks[i].Sub(looks[i-1]))
	}
	gaps = gaps[len(gaps)/2:]
	slices.Sort(gaps)
	n := len(gaps)
	t.Logf("looks %d gaps p50 %v p90 %v p99 %v p999 %v max %v; >300us: %d", n, gaps[n/2], gaps[n*9/10], gaps[n*99/100], gaps[n*999/1000], gaps[n-1], n-slices.IndexFunc(gaps, func(d time.Duration) bool { return d > 300*time.Microsecond }))
}

func BenchmarkOldScanTmp(b *testing.B) {
	s := oldNewScanner("/proc", newMarker(), os.Getpid(), os.Getpid())
	for b.Loop() {
		if _, _, _, err := s.scan(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckTmp(b *testing.B) {
	s := newScanner("/proc", newMarker(), os.Getpid(), os.Getpid())
	s.scan(time.Now())
	for b.Loop() {
		s.check(time.Now())
	}
}
