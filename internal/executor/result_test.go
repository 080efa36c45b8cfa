package executor

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"k8s.io/client-go/rest"
)

func TestTail(t *testing.T) {
	const max = 8
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"shorter than the cap", "abc", "abc"},
		{"exactly the cap", "12345678", "12345678"},
		{"longer than the cap", "0123456789abcdef", "89abcdef"},
		// "é" is 2 bytes: the cut at 8 bytes from the end falls inside it, so it is dropped.
		{"cut inside a character", "xxxxxé1234567", "1234567"},
		// "€" is 3 bytes and fits whole in the last 8.
		{"character at the cut kept whole", "xxxxx€12345", "€12345"},
		{"untouched front keeps leading bytes", "\x80ab", "\uFFFDab"},
		// The two invalid bytes become one U+FFFD (3 bytes): 9 bytes, so the front loses one.
		{"invalid bytes replaced within the cap", "abcdef\xff\xfe", "bcdef\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time, so the ring wraps many times.
			got, err := Tail(iotest.OneByteReader(strings.NewReader(tt.in)), max)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Tail(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !utf8.ValidString(got) || len(got) > max {
				t.Errorf("Tail(%q) = %q: must be valid UTF-8 of at most %d bytes", tt.in, got, max)
			}
			// The same in one big read.
			if again, _ := Tail(strings.NewReader(tt.in), max); again != got {
				t.Errorf("Tail in one read = %q, byte by byte = %q", again, got)
			}
		})
	}
}

func TestTailOfALargeLog(t *testing.T) {
	var log bytes.Buffer
	for i := 0; log.Len() < 10<<20; i++ {
		log.WriteString("line of the log with ünïcödé ")
		log.WriteString(strings.Repeat("z", i%97))
		log.WriteByte('\n')
	}
	want := log.Bytes()[log.Len()-8192:]
	for len(want) > 0 && !utf8.RuneStart(want[0]) {
		want = want[1:]
	}
	got, err := Tail(&log, 8192)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("Tail of a 10 MiB log: got %d bytes, want the last %d", len(got), len(want))
	}
}

func TestPodLogsResult(t *testing.T) {
	var gotPath, gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery = r.URL.Path, r.URL.RawQuery
		_, _ = w.Write([]byte(strings.Repeat("a", 100) + "the end\n"))
	}))
	defer srv.Close()
	l, err := NewPodLogs(&rest.Config{Host: srv.URL}, "ns", "pod-1")
	if err != nil {
		t.Fatal(err)
	}
	l.MaxBytes = 10
	got, err := l.Result(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := "aathe end\n"; got != want {
		t.Errorf("Result = %q, want %q", got, want)
	}
	if gotPath != "/api/v1/namespaces/ns/pods/pod-1/log" {
		t.Errorf("path = %s", gotPath)
	}
	if gotQuery != "container=main&tailLines=11" {
		t.Errorf("query = %s", gotQuery)
	}
}
