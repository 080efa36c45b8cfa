package executor

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

func TestFindCmpTmp(t *testing.T) {
	if !inPIDNamespace(t) {
		return
	}
	type finder interface {
		Find(context.Context, func() error) (int, error)
	}
	kinds := []string{"old", "newpoll", "newthreads"}
	counts := map[string]int{}
	for i := 0; i < 3*perKind(); i++ {
		marker := newMarker()
		kind := kinds[i%3]
		var f finder
		var lg *modeLog
		switch kind {
		case "old":
			f = &oldProcFinder{ProcRoot: "/proc", Marker: marker, Self: os.Getpid(), Parent: os.Getpid()}
		case "newpoll":
			nf := testFinder(marker)
			nf.noThreadPidfds = true
			f = nf
		default:
			nf := testFinder(marker)
			f = nf
			lg = &modeLog{}
			nf.trace = lg.record
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ready := make(chan struct{})
		res := make(chan int, 1)
		go func() {
			pid, _ := f.Find(ctx, func() error { close(ready); return nil })
			res <- pid
		}()
		<-ready
		time.Sleep(20 * time.Millisecond)
		cmd := exec.Command(helperBin, "-exec-after", os.Getenv("EXEC_AFTER"), "-env", marker, "/bin/true")
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		if pid := <-res; pid == cmd.Process.Pid {
			counts[kind]++
		} else if lg != nil {
			t.Logf("missed: started %s modes %v", started.Format("05.000000"), lg)
		}
		cancel()
		cmd.Wait()
	}
	t.Logf("caught of %d: %v", perKind(), counts)
}

func perKind() int {
	if n, err := strconv.Atoi(os.Getenv("PER_KIND")); err == nil {
		return n
	}
	return 20
}
