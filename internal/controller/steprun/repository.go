package steprun

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// repositories finds a run's artifact repository: the ConfigMap the StepRun names in its own
// namespace, else the manager's default. It reads the ConfigMap once per run that stores
// artifacts, straight from the API server: caching every namespace's ConfigMaps would cost the
// manager far more memory than these few reads. The credentials stay in a Secret the manager
// never reads; only the kubelet does, for the executor.
type repositories struct {
	reader client.Reader
	// fallback is the manager's default repository ConfigMap; an empty name means none.
	fallback types.NamespacedName
}

// resolve: one GET of the repository's ConfigMap.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// resolve returns the run's repository, or a message saying why it has none (the run then ends
// Error/ArtifactRepositoryUnavailable before any Pod exists); an error is worth a retry.
func (r repositories) resolve(ctx context.Context, sr *v1alpha1.StepRun) (*executorconfig.Repository, string, error) {
	ref := r.fallback
	if sr.Spec.ArtifactRepositoryRef != nil && sr.Spec.ArtifactRepositoryRef.Name != "" {
		ref = types.NamespacedName{Namespace: sr.Namespace, Name: sr.Spec.ArtifactRepositoryRef.Name}
	}
	if ref.Name == "" {
		return nil, "the run stores artifacts but no artifact repository is configured: set spec.artifactRepositoryRef, or the manager's --artifact-repository", nil
	}
	cm := &corev1.ConfigMap{}
	switch err := r.reader.Get(ctx, ref, cm); {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("artifact repository ConfigMap %s not found", ref), nil
	case err != nil:
		return nil, "", fmt.Errorf("reading artifact repository ConfigMap %s: %w", ref, err)
	}
	repo, err := executorconfig.ParseRepository(cm.Data)
	if err != nil {
		return nil, fmt.Sprintf("artifact repository ConfigMap %s: %v", ref, err), nil
	}
	return &repo, "", nil
}

// defaultRepositoryTTL is how long the default repository is remembered for runs that only ask
// it whether to archive their log: such a run needs no GET of its own.
const defaultRepositoryTTL = 30 * time.Second

// defaultRepository remembers the manager's default repository (nil when it has none, or it is
// invalid) for defaultRepositoryTTL.
type defaultRepository struct {
	mu   sync.Mutex
	at   time.Time
	repo *executorconfig.Repository
}

// get returns the default repository, reading it when the remembered one is older than the TTL.
// A failed read counts as no repository (the run then archives nothing) and is tried again on
// the next run.
func (d *defaultRepository) get(ctx context.Context, reader client.Reader, ref types.NamespacedName, now time.Time) *executorconfig.Repository {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.at.IsZero() && now.Sub(d.at) < defaultRepositoryTTL {
		return d.repo
	}
	repos := repositories{reader: reader, fallback: ref}
	repo, msg, err := repos.resolve(ctx, &v1alpha1.StepRun{})
	switch {
	case err != nil:
		ctrl.LoggerFrom(ctx).Error(err, "Reading the default artifact repository")
		return nil
	case msg != "":
		repo = nil
	}
	d.at, d.repo = now, repo
	return repo
}
