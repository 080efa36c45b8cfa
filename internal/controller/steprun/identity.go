package steprun

import (
	"context"
	"fmt"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// ExecutorIdentity is the name of the default ServiceAccount, RoleBinding and ClusterRole that
// executors run as.
const ExecutorIdentity = "pnsflow-executor"

// identities makes sure an executor can report: it keeps the default pnsflow-executor
// ServiceAccount and RoleBinding in each namespace, and checks a user-chosen account with a
// SubjectAccessReview.
type identities struct {
	client client.Client
	// ensured maps a namespace to its *namespaceSetup, so a 5000-step fan-out costs two creates,
	// not 10000. A restarted manager re-learns them with one AlreadyExists each.
	ensured sync.Map
}

// namespaceSetup lets one reconcile set a namespace up while the others wait for it, instead of
// all of a fan-out's first StepRuns racing to create the same two objects.
type namespaceSetup struct {
	sync.Mutex
	done bool
}

// check asks the API server whether a user-chosen account may patch stepruns/status.
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// check returns a non-empty message when the StepRun's executor would not be allowed to report.
func (i *identities) check(ctx context.Context, sr *v1alpha1.StepRun) (string, error) {
	if usesDefaultIdentity(sr) {
		_, err := i.ensureDefault(ctx, sr.Namespace)
		return "", err
	}
	user := fmt.Sprintf("system:serviceaccount:%s:%s", sr.Namespace, sr.Spec.ServiceAccountName)
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sr.Namespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace:   sr.Namespace,
			Verb:        "patch",
			Group:       v1alpha1.GroupVersion.Group,
			Resource:    "stepruns",
			Subresource: "status",
			Name:        sr.Name,
		},
	}}
	if err := i.client.Create(ctx, sar); err != nil {
		return "", fmt.Errorf("reviewing access of service account %q: %w", sr.Spec.ServiceAccountName, err)
	}
	if sar.Status.Allowed {
		return "", nil
	}
	return fmt.Sprintf("service account %q may not patch stepruns/status in namespace %q, so its executor could not report; "+
		"bind it to the %s ClusterRole or leave serviceAccountName empty", sr.Spec.ServiceAccountName, sr.Namespace, ExecutorIdentity), nil
}

// ensureDefault creates the executor's ServiceAccount in each namespace that runs steps.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=create
// ensureDefault binds that account to the pnsflow-executor ClusterRole.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=create
// That binding passes RBAC's escalation check by bind on this one role, not by holding its rules.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=pnsflow-executor

// It reports whether it created either (rather than finding both there).
func (i *identities) ensureDefault(ctx context.Context, namespace string) (bool, error) {
	v, _ := i.ensured.LoadOrStore(namespace, &namespaceSetup{})
	setup := v.(*namespaceSetup)
	setup.Lock()
	defer setup.Unlock()
	if setup.done {
		return false, nil
	}
	labels := map[string]string{"app.kubernetes.io/managed-by": "pnsflow"}
	sa := &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: ExecutorIdentity, Namespace: namespace, Labels: labels},
		// Executors get a projected token; nothing should mount the legacy one.
		AutomountServiceAccountToken: new(false),
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ExecutorIdentity, Namespace: namespace, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ExecutorIdentity},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ExecutorIdentity, Namespace: namespace}},
	}
	madeSA, err := i.createIfAbsent(ctx, sa, "service account")
	if err != nil {
		return false, err
	}
	madeRB, err := i.createIfAbsent(ctx, rb, "role binding")
	if err != nil {
		return false, err
	}
	setup.done = true
	return madeSA || madeRB, nil
}

// createIfAbsent creates obj and reports whether it did; one already there is no error.
func (i *identities) createIfAbsent(ctx context.Context, obj client.Object, what string) (bool, error) {
	switch err := i.client.Create(ctx, obj); {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		return false, nil
	default:
		return false, fmt.Errorf("creating executor %s: %w", what, err)
	}
}

// repair sets the default identity up again in the run's namespace, when the run uses it, and
// reports whether something was missing. The namespace is remembered as set up, but its
// ServiceAccount may have gone since: deleted, or the namespace deleted and made again under the
// same name (as test and CI setups do), which makes the Pod's create forbidden.
func (i *identities) repair(ctx context.Context, sr *v1alpha1.StepRun) (bool, error) {
	if !usesDefaultIdentity(sr) {
		return false, nil
	}
	i.ensured.Delete(sr.Namespace)
	return i.ensureDefault(ctx, sr.Namespace)
}

func usesDefaultIdentity(sr *v1alpha1.StepRun) bool {
	return sr.Spec.ServiceAccountName == "" || sr.Spec.ServiceAccountName == ExecutorIdentity
}
