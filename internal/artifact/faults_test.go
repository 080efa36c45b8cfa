package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// cutBody fails after n bytes, as a connection reset mid-download would.
type cutBody struct {
	io.ReadCloser
	n int
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errors.New("connection cut by the test proxy")
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.ReadCloser.Read(p)
	c.n -= n
	return n, err
}

// TestADownloadThatBreaksMidBodyResumesWhereItStopped puts a proxy in front of weed that cuts
// the first two GET bodies after 1 MiB; the download must still deliver every byte once, by
// ranged requests from where each attempt broke.
func TestADownloadThatBreaksMidBodyResumesWhereItStopped(t *testing.T) {
	c := testClient(t)
	data := randomBytes(t, 3<<20+17)
	if _, _, err := c.UploadFile(t.Context(), "ns/sr/resume", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}

	target, _ := url.Parse(c.Repository().URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	var mu sync.Mutex
	var gets []string // the Range header of every GET
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodGet {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		gets = append(gets, r.Request.Header.Get("Range"))
		if len(gets) <= 2 {
			r.Body = &cutBody{ReadCloser: r.Body, n: 1 << 20}
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	defer srv.Close()

	repo := c.Repository()
	repo.Endpoint = strings.TrimPrefix(srv.URL, "http://")
	pc, err := NewClient(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	n, sum, err := pc.Download(t.Context(), "ns/sr/resume", &got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) || n != int64(len(data)) || sum != sha(data) {
		t.Errorf("resumed download differs: %d bytes, sha256 %s, want %d %s", n, sum, len(data), sha(data))
	}
	// Three GETs: the whole object, then twice from where the previous body broke (the proxy may
	// not deliver every byte it read before the cut, so the offsets are at most 1 MiB apart).
	if len(gets) != 3 || gets[0] != "" {
		t.Fatalf("GET ranges = %q, want a plain GET and two ranged ones", gets)
	}
	prev := int64(0)
	for _, g := range gets[1:] {
		var from int64
		if _, err := fmt.Sscanf(g, "bytes=%d-", &from); err != nil || from <= prev || from > prev+1<<20 {
			t.Errorf("GET ranges = %q: want each to start after the previous, at most 1 MiB later", gets)
		}
		prev = from
	}
}

// TestServerErrorsAreRetriedWithTheStreamIntact answers the first two requests of each kind with
// 503, as an overloaded repository would: the SDK's retryer must try again and, because the
// transfer manager buffers each part, resend the same bytes of a stream it cannot rewind.
func TestServerErrorsAreRetriedWithTheStreamIntact(t *testing.T) {
	c := testClient(t)
	target, _ := url.Parse(c.Repository().URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	var mu sync.Mutex
	failed := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		kind := r.Method + " " + q.Get("x-id")
		switch {
		case q.Has("partNumber"):
			kind += " part " + q.Get("partNumber")
		case r.Method == http.MethodPost && q.Has("uploadId"):
			kind += " complete"
		case r.Method == http.MethodPost:
			kind += " create"
		}
		mu.Lock()
		fail := failed[kind] < 2
		if fail {
			failed[kind]++
		}
		mu.Unlock()
		if fail {
			io.Copy(io.Discard, r.Body)
			http.Error(w, "<Error><Code>ServiceUnavailable</Code><Message>try again</Message></Error>", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	repo := c.Repository()
	repo.Endpoint = strings.TrimPrefix(srv.URL, "http://")
	pc, err := NewClient(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 2*partSize+1000)
	n, sum, err := pc.UploadFile(t.Context(), "ns/sr/retried", onlyReader{bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, _, err := pc.Download(t.Context(), "ns/sr/retried", &got); err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || sum != sha(data) || !bytes.Equal(got.Bytes(), data) {
		t.Errorf("after retries: %d bytes sha256 %s (equal %v), want %d %s", n, sum, bytes.Equal(got.Bytes(), data), len(data), sha(data))
	}
	t.Logf("requests answered 503 first: %v", failed)
}
