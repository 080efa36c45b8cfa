package podspec

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// terminationLog is where kubelet reads a container's termination message by default; the
// loader writes its failure there for the controller.
const terminationLog = "/dev/termination-log"

// HasInputArtifacts reports whether the run loads input artifacts, and so has a loader.
func HasInputArtifacts(spec *v1alpha1.StepRunSpec) bool {
	return spec.Inputs != nil && len(spec.Inputs.Artifacts) > 0
}

// CheckInputKeys refuses an input artifact key outside the run's own namespace in its
// repository (<keyPrefix>/<namespace>/), so that one namespace cannot read another's artifacts
// through a shared bucket. The message names the first offending input.
func CheckInputKeys(sr *v1alpha1.StepRun, repo *executorconfig.Repository) error {
	if !HasInputArtifacts(&sr.Spec) {
		return nil
	}
	if repo == nil {
		return invalid("spec.inputs.artifacts: no artifact repository configured")
	}
	own := ArtifactKey(repo.KeyPrefix, sr.Namespace, "", "") + "/"
	for i, a := range sr.Spec.Inputs.Artifacts {
		if !KeyAllowed(a.Key, own) {
			return invalid("spec.inputs.artifacts[%d] (%s): key %q is outside this namespace's artifacts: it must start with %q",
				i, a.Name, a.Key, own)
		}
	}
	return nil
}

// KeyAllowed reports whether key names an object under prefix (which ends in "/"): relative,
// clean, and with no segment that could climb out of it.
func KeyAllowed(key, prefix string) bool {
	if !strings.HasPrefix(key, prefix) || len(key) == len(prefix) {
		return false
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// addInputMounts mounts each input artifact into main from the inputs emptyDir, like one of
// main's own volumes, so the executor mirrors it too (an output may lie under an input's path).
func addInputMounts(spec *v1alpha1.StepRunSpec) {
	if !HasInputArtifacts(spec) {
		return
	}
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name:         executorconfig.InputsVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	})
	for _, a := range spec.Inputs.Artifacts {
		spec.VolumeMounts = append(spec.VolumeMounts, corev1.VolumeMount{
			Name: executorconfig.InputsVolume, MountPath: path.Clean(a.Path), SubPath: a.Name,
		})
	}
}

// validateInputs refuses input paths that would collide with another mount of main's: the API
// server would refuse the Pod, and later than this. The CRD schema checks the rest.
func validateInputs(spec *v1alpha1.StepRunSpec) error {
	if !HasInputArtifacts(spec) {
		return nil
	}
	taken := map[string]string{path.Clean(executorconfig.OutputsDir): "pnsflow's outputs directory"}
	for _, m := range spec.VolumeMounts {
		taken[path.Clean("/"+m.MountPath)] = fmt.Sprintf("volume %q", m.Name)
	}
	for i, a := range spec.Inputs.Artifacts {
		p := path.Clean(a.Path)
		if p == "/" || !path.IsAbs(a.Path) || within(p, reservedDir) {
			return invalid("spec.inputs.artifacts[%d] (%s): path %q must be absolute, not / and not under %s", i, a.Name, a.Path, reservedDir)
		}
		if other, ok := taken[p]; ok {
			return invalid("spec.inputs.artifacts[%d] (%s): path %s is already the mount path of %s", i, a.Name, p, other)
		}
		taken[p] = fmt.Sprintf("input artifact %q", a.Name)
	}
	return nil
}

// loaderContainer is the init container that loads input artifacts into the inputs emptyDir
// before main starts: the executor's image running `load`, with the repository's credentials but
// no API token, as main's UID and GID when the StepRun fixes them (so main owns what it gets).
func loaderContainer(sr *v1alpha1.StepRun, cfg Config, credentials []corev1.EnvVar) (corev1.Container, error) {
	repo := cfg.Repository
	var inputs []executorconfig.Input
	for _, a := range sr.Spec.Inputs.Artifacts {
		inputs = append(inputs, executorconfig.Input{
			Name: a.Name, Key: a.Key, Archive: a.Archive, Optional: a.Optional,
			Dest: path.Join(executorconfig.InputsDir, a.Name),
		})
	}
	config, err := executorconfig.LoaderConfig{Repository: *repo, Inputs: inputs}.Encode()
	if err != nil {
		return corev1.Container{}, err
	}
	return corev1.Container{
		Name:            executorconfig.LoaderContainer,
		Image:           cfg.ExecutorImage,
		ImagePullPolicy: cfg.ExecutorImagePullPolicy,
		Command:         []string{executorBinary, "load"},
		Env:             append([]corev1.EnvVar{{Name: executorconfig.LoaderConfigEnv, Value: config}}, credentials...),
		Resources:       executorResources(cfg.ExecutorResources, true),
		VolumeMounts: []corev1.VolumeMount{{
			Name: executorconfig.InputsVolume, MountPath: executorconfig.InputsDir,
		}},
		SecurityContext:          loaderSecurityContext(sr),
		TerminationMessagePath:   terminationLog,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}, nil
}

// loaderSecurityContext: no capability and no way to gain one. With main's UID unknown the
// loader runs as root without capabilities (explicitly, so a Pod-level runAsNonRoot cannot block
// it), and main may read but not change what it loaded; docs/architecture.md says to set
// runAsUser and runAsGroup.
func loaderSecurityContext(sr *v1alpha1.StepRun) *corev1.SecurityContext {
	uid, gid := mainIDs(sr)
	sc := &corev1.SecurityContext{
		RunAsUser:                new(int64(0)),
		RunAsNonRoot:             new(false),
		AllowPrivilegeEscalation: new(false),
		ReadOnlyRootFilesystem:   new(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if uid != nil {
		sc.RunAsUser, sc.RunAsNonRoot = new(*uid), new(*uid != 0)
	}
	if gid != nil {
		sc.RunAsGroup = new(*gid)
	}
	return sc
}
