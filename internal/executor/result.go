package executor

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// tailBuffer keeps the last len(buf) bytes written to it: a ring, so a log of any size costs
// len(buf) bytes of memory.
type tailBuffer struct {
	buf   []byte
	total int64 // bytes written so far
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	size := int64(len(t.buf))
	if size == 0 {
		t.total += int64(n)
		return n, nil
	}
	if int64(len(p)) > size {
		t.total += int64(len(p)) - size
		p = p[int64(len(p))-size:]
	}
	for len(p) > 0 {
		c := copy(t.buf[t.total%size:], p)
		p = p[c:]
		t.total += int64(c)
	}
	return n, nil
}

// truncated reports whether bytes were dropped from the front.
func (t *tailBuffer) truncated() bool { return t.total > int64(len(t.buf)) }

// bytes returns the kept bytes in order.
func (t *tailBuffer) bytes() []byte {
	if !t.truncated() {
		return append([]byte(nil), t.buf[:t.total]...)
	}
	pos := t.total % int64(len(t.buf))
	out := make([]byte, 0, len(t.buf))
	out = append(out, t.buf[pos:]...)
	return append(out, t.buf[:pos]...)
}

// Tail reads r to the end and returns at most the last max bytes of it as valid UTF-8: when the
// front was cut, the cut moves forward to a character boundary; invalid sequences (binary output)
// become U+FFFD, and the front is cut again if that made the text longer than max.
func Tail(r io.Reader, max int) (string, error) {
	if max <= 0 {
		_, err := io.Copy(io.Discard, r)
		return "", err
	}
	t := &tailBuffer{buf: make([]byte, max)}
	if _, err := io.Copy(t, r); err != nil {
		return "", err
	}
	return tailText(t, max), nil
}

// tailText is what t kept, as valid UTF-8 of at most max bytes (see Tail).
func tailText(t *tailBuffer, max int) string {
	b := t.bytes()
	if t.truncated() {
		// Drop a character's continuation bytes left at the front by the cut (at most 3).
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
		for len(s) > max {
			_, size := utf8.DecodeRuneInString(s)
			s = s[size:]
		}
	}
	return s
}

// PodLogs reads the tail of main's log through the Pod log API.
type PodLogs struct {
	client    rest.Interface
	namespace string
	pod       string
	// MaxBytes caps the result; zero means v1alpha1.MaxResultBytes.
	MaxBytes int
}

// NewPodLogs returns a reader of main's log in Pod ns/pod.
func NewPodLogs(cfg *rest.Config, ns, pod string) (*PodLogs, error) {
	c, err := newCoreClient(cfg)
	if err != nil {
		return nil, err
	}
	return NewPodLogsForClient(c, ns, pod), nil
}

// NewPodLogsForClient returns a reader of main's log using a core v1 REST client.
func NewPodLogsForClient(c rest.Interface, ns, pod string) *PodLogs {
	return &PodLogs{client: c, namespace: ns, pod: pod}
}

// Result returns the tail of main's log (stdout and stderr as the kubelet keeps them). It asks
// for the last max+1 lines only: each line is at least one byte, so those hold the last max bytes,
// and a log of millions of lines is not streamed whole.
func (l *PodLogs) Result(ctx context.Context) (string, error) {
	max := l.MaxBytes
	if max <= 0 {
		max = v1alpha1.MaxResultBytes
	}
	stream, err := l.client.Get().Namespace(l.namespace).Resource("pods").Name(l.pod).
		SubResource("log").
		Param("container", executorconfig.MainContainer).
		Param("tailLines", strconv.Itoa(max+1)).
		Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("reading main's log: %w", err)
	}
	defer stream.Close()
	s, err := Tail(stream, max)
	if err != nil {
		return "", fmt.Errorf("reading main's log: %w", err)
	}
	return s, nil
}
