package testutil

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Helpers that run pnsflow under the RBAC it ships (config/rbac): the envtest suites and the
// benchmark install it as `make deploy` does and authenticate the manager as its ServiceAccount.

// ManagerAccount is the manager's ServiceAccount (config/rbac/service_account.yaml).
const ManagerAccount = "pnsflow-manager"

// ServiceAccountUser is who a ServiceAccount's token authenticates as: for
// envtest.ControlPlane.AddUser, or for impersonation.
func ServiceAccountUser(namespace, name string) (user string, groups []string) {
	return "system:serviceaccount:" + namespace + ":" + name,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
}

// ShippedRBAC returns the objects of config/rbac (dir), every file its kustomization lists, as
// `make deploy` installs them into namespace: like kustomize's namespace transformer, it sets
// the namespace of each namespaced object and of each ServiceAccount subject of a binding.
func ShippedRBAC(dir, namespace string) ([]client.Object, error) {
	var k struct{ Resources []string }
	if err := readYAML(filepath.Join(dir, "kustomization.yaml"), &k); err != nil {
		return nil, err
	}
	var out []client.Object
	for _, f := range k.Resources {
		path := filepath.Join(dir, f)
		var head metav1.TypeMeta
		if err := readYAML(path, &head); err != nil {
			return nil, err
		}
		var obj client.Object
		switch head.Kind {
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "Role":
			obj = &rbacv1.Role{}
		case "RoleBinding":
			obj = &rbacv1.RoleBinding{}
		default:
			return nil, fmt.Errorf("%s: unexpected kind %q", path, head.Kind)
		}
		if err := readYAML(path, obj); err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount, *rbacv1.Role:
			o.SetNamespace(namespace)
		case *rbacv1.RoleBinding:
			o.Namespace = namespace
			inNamespace(o.Subjects, namespace)
		case *rbacv1.ClusterRoleBinding:
			inNamespace(o.Subjects, namespace)
		}
		out = append(out, obj)
	}
	return out, nil
}

func inNamespace(subjects []rbacv1.Subject, namespace string) {
	for i := range subjects {
		if subjects[i].Kind == rbacv1.ServiceAccountKind {
			subjects[i].Namespace = namespace
		}
	}
}

// InstallShippedRBAC creates namespace unless it exists, then ShippedRBAC's objects.
func InstallShippedRBAC(ctx context.Context, c client.Client, dir, namespace string) error {
	objs, err := ShippedRBAC(dir, namespace)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("installing %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// ReadClusterRole decodes a ClusterRole file such as config/rbac/executor_role.yaml.
func ReadClusterRole(path string) (*rbacv1.ClusterRole, error) {
	role := &rbacv1.ClusterRole{}
	if err := readYAML(path, role); err != nil {
		return nil, err
	}
	return role, nil
}

func readYAML(path string, into any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}

// Refusals records each request the API server refused with 403 Forbidden, from every
// rest.Config it was installed on: an identity whose RBAC is enough is never refused.
type Refusals struct {
	mu   sync.Mutex
	seen []string
}

// Record returns a copy of cfg whose refused requests are recorded.
func (r *Refusals) Record(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Wrap(func(next http.RoundTripper) http.RoundTripper { return &refusalRecorder{next: next, refusals: r} })
	return c
}

// List returns the refused requests so far, each as "METHOD /path?query".
func (r *Refusals) List() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// Reset forgets the refusals recorded so far.
func (r *Refusals) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = nil
}

func (r *Refusals) add(req *http.Request, how string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, req.Method+" "+req.URL.RequestURI()+how)
}

type refusalRecorder struct {
	next     http.RoundTripper
	refusals *Refusals
}

func (t *refusalRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	switch {
	case err == nil && resp.StatusCode == http.StatusForbidden:
		t.refusals.add(req, "")
	case err != nil && refusedUpgrade(err):
		t.refusals.add(req, " (WebSocket)")
	}
	return resp, err
}

// refusedUpgrade tells a refused WebSocket handshake: client-go's WebSocket round tripper
// returns it as an UpgradeFailureError, never as a response, caused by the API server's Status
// or, when that cannot be decoded, by an error naming the HTTP status.
func refusedUpgrade(err error) bool {
	var failed *httpstream.UpgradeFailureError
	if !errors.As(err, &failed) || failed.Cause == nil {
		return false
	}
	return apierrors.IsForbidden(failed.Cause) || strings.Contains(failed.Cause.Error(), "(403 Forbidden)")
}
