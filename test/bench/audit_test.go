//go:build bench

package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// auditPolicy logs every write at Metadata level, once, when its response is complete; reads
// and watches are not logged.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

// auditEvent is the part of an audit.k8s.io/v1 Event the benchmark reads.
type auditEvent struct {
	Stage            string                     `json:"stage"`
	Verb             string                     `json:"verb"`
	User             struct{ Username string }  `json:"user"`
	ImpersonatedUser *struct{ Username string } `json:"impersonatedUser"`
	ObjectRef        *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

func (e *auditEvent) user() string {
	if e.ImpersonatedUser != nil && e.ImpersonatedUser.Username != "" {
		return e.ImpersonatedUser.Username
	}
	return e.User.Username
}

// writeCounts are the write requests in one namespace, by writer.
type writeCounts struct {
	byUser map[string]int
	// detail counts "user verb resource[/subresource]" with the failed (≥ 400) ones apart.
	detail map[string]int
	failed map[string]int
}

// countWrites reads the audit log and counts the completed write requests in namespace ns. It
// reports whether the marker object (a ConfigMap created last, after the manager stopped) was
// seen: the audit log's line for a request may land just after the client has its response.
func countWrites(path, ns, marker string) (*writeCounts, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	c := &writeCounts{byUser: map[string]int{}, detail: map[string]int{}, failed: map[string]int{}}
	seen := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e auditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			// The last line may be half written while the API server appends.
			continue
		}
		if e.Stage != "ResponseComplete" || e.ObjectRef == nil || e.ObjectRef.Namespace != ns {
			continue
		}
		if e.ObjectRef.Resource == "configmaps" && e.ObjectRef.Name == marker {
			seen = true
			continue
		}
		u := e.user()
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		key := fmt.Sprintf("%s %s %s", u, e.Verb, res)
		c.byUser[u]++
		c.detail[key]++
		if e.ResponseStatus != nil && e.ResponseStatus.Code >= 400 {
			c.failed[fmt.Sprintf("%s (%d)", key, e.ResponseStatus.Code)]++
		}
	}
	return c, seen, sc.Err()
}

func (c *writeCounts) describe(shorten func(string) string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(c.detail)) {
		fmt.Fprintf(&b, "      %7d  %s\n", c.detail[k], shorten(k))
	}
	for _, k := range slices.Sorted(maps.Keys(c.failed)) {
		fmt.Fprintf(&b, "      %7d  %s  (failed)\n", c.failed[k], shorten(k))
	}
	return b.String()
}
