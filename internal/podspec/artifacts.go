package podspec

import (
	"path"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// UsesArtifacts reports whether the run stores or loads artifacts, or asks for its log to be
// archived, and so needs a repository.
func UsesArtifacts(spec *v1alpha1.StepRunSpec) bool {
	return hasOutputArtifacts(spec) || HasInputArtifacts(spec) || spec.ArchiveLogs != nil && *spec.ArchiveLogs
}

// ArchivesLogs reports whether the run archives main's log: spec.archiveLogs, else the
// repository's default (none without a repository).
func ArchivesLogs(spec *v1alpha1.StepRunSpec, repo *executorconfig.Repository) bool {
	if spec.ArchiveLogs != nil {
		return *spec.ArchiveLogs
	}
	return repo != nil && repo.ArchiveLogs
}

func hasOutputArtifacts(spec *v1alpha1.StepRunSpec) bool {
	return spec.Outputs != nil && len(spec.Outputs.Artifacts) > 0
}

// ArtifactKey is where a run's artifact is stored: <keyPrefix>/<namespace>/<steprun>/<name>.
// Keys are per namespace and per run, so one namespace's runs never write where another's read.
func ArtifactKey(keyPrefix, namespace, stepRun, name string) string {
	key := path.Join(keyPrefix, namespace, stepRun, name)
	if len(key) > 0 && key[0] == '/' {
		return key[1:]
	}
	return key
}

// outputArtifacts lists the executor's artifacts, each with its key.
func outputArtifacts(sr *v1alpha1.StepRun, repo *executorconfig.Repository) ([]executorconfig.Artifact, error) {
	if !hasOutputArtifacts(&sr.Spec) {
		return nil, nil
	}
	if repo == nil {
		return nil, invalid("spec.outputs.artifacts: no artifact repository configured")
	}
	var out []executorconfig.Artifact
	for _, a := range sr.Spec.Outputs.Artifacts {
		out = append(out, executorconfig.Artifact{
			Name: a.Name, Path: a.Path, Archive: a.Archive, Optional: a.Optional,
			Key: ArtifactKey(repo.KeyPrefix, sr.Namespace, sr.Name, a.Name),
		})
	}
	return out, nil
}

// credentialEnv gives a container (the executor or the loader, never main) the repository's
// credentials, which the kubelet reads from its Secret.
func credentialEnv(repo *executorconfig.Repository) []corev1.EnvVar {
	secret := func(env, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: repo.SecretName}, Key: key,
		}}}
	}
	return []corev1.EnvVar{
		secret(executorconfig.AccessKeyEnv, executorconfig.SecretAccessKeyKey),
		secret(executorconfig.SecretKeyEnv, executorconfig.SecretSecretKeyKey),
	}
}

// artifactMemoryLimit is the least memory limit of an executor that uploads artifacts: the
// transfer manager holds a few 8 MiB parts in flight (about 50 MiB at most, measured with a
// 256 MiB stream) on top of the executor's usual ~20 MiB.
var artifactMemoryLimit = resource.MustParse("128Mi")

// executorResources raises the memory limit to artifactMemoryLimit when the executor uploads.
func executorResources(r corev1.ResourceRequirements, uploads bool) corev1.ResourceRequirements {
	limit, ok := r.Limits[corev1.ResourceMemory]
	if !uploads || !ok || limit.Cmp(artifactMemoryLimit) >= 0 {
		return r
	}
	r = *r.DeepCopy()
	r.Limits[corev1.ResourceMemory] = artifactMemoryLimit.DeepCopy()
	return r
}
