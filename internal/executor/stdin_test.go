package executor

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"k8s.io/client-go/rest"
)

// fakeAttachServer speaks the server side of pods/attach over WebSocket (v5.channel.k8s.io):
// each binary message is a stream id and data; [255, id] closes stream id. It collects stdin
// until stdin is closed, then reports success on the error stream (3) and hangs up.
type fakeAttachServer struct {
	mu       sync.Mutex
	method   string
	path     string
	query    string
	stdin    bytes.Buffer
	closed   bool
	protocol string
}

func (f *fakeAttachServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.method, f.path, f.query = r.Method, r.URL.Path, r.URL.RawQuery
	f.mu.Unlock()
	up := websocket.Upgrader{Subprotocols: []string{"v5.channel.k8s.io"}}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	f.mu.Lock()
	f.protocol = conn.Subprotocol()
	f.mu.Unlock()
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil || len(msg) == 0 {
			return
		}
		switch {
		case msg[0] == 0:
			f.mu.Lock()
			f.stdin.Write(msg[1:])
			f.mu.Unlock()
		case msg[0] == 255 && len(msg) == 2 && msg[1] == 0:
			f.mu.Lock()
			f.closed = true
			f.mu.Unlock()
			status := append([]byte{3}, `{"metadata":{},"status":"Success"}`...)
			_ = conn.WriteMessage(websocket.BinaryMessage, status)
			_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			return
		}
	}
}

func TestPodAttacherWritesAndClosesStdin(t *testing.T) {
	f := &fakeAttachServer{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	a, err := NewPodAttacher(&rest.Config{Host: srv.URL}, "ns", "p")
	if err != nil {
		t.Fatal(err)
	}
	stdin := strings.Repeat("line of stdin\n", 10000) // several WebSocket messages
	if err := a.Attach(testCtx(t), strings.NewReader(stdin)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.method != http.MethodGet || f.path != "/api/v1/namespaces/ns/pods/p/attach" || f.query != "container=main&stdin=true" {
		t.Errorf("request = %s %s?%s", f.method, f.path, f.query)
	}
	if f.protocol != "v5.channel.k8s.io" {
		t.Errorf("protocol = %q", f.protocol)
	}
	if f.stdin.String() != stdin || !f.closed {
		t.Errorf("stdin got %d bytes (closed %v), want %d bytes then closed", f.stdin.Len(), f.closed, len(stdin))
	}
}
