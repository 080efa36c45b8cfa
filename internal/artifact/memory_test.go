package artifact

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// genReader yields n pseudo-random bytes without holding them: it cycles a 1 MiB random block,
// shifting where it starts each lap so no two parts are identical.
type genReader struct {
	block []byte
	off   int64
	n     int64
}

func newGenReader(n int64, seed uint64) *genReader {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &genReader{block: b, n: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	lap := g.off / int64(len(g.block))
	// Never cross into the next lap within one read: the content must depend on the offset
	// alone, not on how the reader is called.
	if rem := min(g.n, (lap+1)*int64(len(g.block))) - g.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	i := int((g.off + lap*7919) % int64(len(g.block)))
	n := copy(p, g.block[i:])
	g.off += int64(n)
	return n, nil
}

// procStatus reads a "VmXxx:  1234 kB" field of /proc/self/status, in bytes.
func procStatus(t testing.TB, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// resetPeakRSS returns the free heap to the OS and makes VmHWM start again from the current RSS
// (Linux's clear_refs "5"), so the growth measured afterwards belongs to what runs next: without
// FreeOSMemory, pages an earlier test freed but kept would absorb the growth unseen.
func resetPeakRSS(t testing.TB) {
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("resetting peak RSS: %v", err)
	}
}

// heapPeak samples the live heap (runtime/metrics) until stopped and returns its maximum.
func heapPeak() (stop func() uint64) {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			mu.Lock()
			peak = max(peak, s[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

func TestUploadingA256MiBStreamKeepsMemoryBounded(t *testing.T) {
	const size = 256 << 20
	const bound = 64 << 20
	c := testClient(t)
	key := "ns/sr/big"

	resetPeakRSS(t)
	baseRSS := procStatus(t, "VmRSS")
	stop := heapPeak()
	n, sum, err := c.UploadFile(t.Context(), key, newGenReader(size, 1))
	heap := stop()
	peakRSS := procStatus(t, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	if _, err := io.Copy(want, newGenReader(size, 1)); err != nil {
		t.Fatal(err)
	}
	if n != size || sum != hex.EncodeToString(want.Sum(nil)) {
		t.Errorf("upload reported %d %s", n, sum)
	}
	t.Logf("upload of %d MiB: peak RSS %+d MiB over the %d MiB before, peak live heap %d MiB", size>>20, (peakRSS-baseRSS)>>20, baseRSS>>20, heap>>20)
	if peakRSS-baseRSS > bound || heap > bound {
		t.Errorf("peak RSS grew by %d MiB (live heap peak %d MiB) during the upload, want at most %d MiB", (peakRSS-baseRSS)>>20, heap>>20, bound>>20)
	}

	resetPeakRSS(t)
	baseRSS = procStatus(t, "VmRSS")
	stop = heapPeak()
	n, sum2, err := c.Download(t.Context(), key, io.Discard)
	heap = stop()
	peakRSS = procStatus(t, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	if n != size || sum2 != sum {
		t.Errorf("download reported %d %s, want %d %s", n, sum2, size, sum)
	}
	t.Logf("download of %d MiB: peak RSS %+d MiB, peak live heap %d MiB", size>>20, (peakRSS-baseRSS)>>20, heap>>20)
	if peakRSS-baseRSS > bound || heap > bound {
		t.Errorf("peak RSS grew by %d MiB (live heap peak %d MiB) during the download, want at most %d MiB", (peakRSS-baseRSS)>>20, heap>>20, bound>>20)
	}
}
