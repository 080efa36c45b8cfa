// Package podspec builds the Pod that runs one StepRun: the user's main container beside the
// pns-executor sidecar in a shared process namespace. It owns the Pod's whole shape (name,
// labels, owner reference, the executor's privileges, mounts, token and configuration) as a pure
// function of the StepRun and the operator's Config, so the controller only creates what Build
// returns, a restarted controller rebuilds the same Pod, and the shape is tested without a cluster.
package podspec

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// ErrInvalidStepRun marks errors caused by the StepRun itself: retrying cannot help, so the
// controller can end the StepRun (Error, InvalidPod) instead of requeueing. Errors without it
// (a nil StepRun, no executor image configured) are the operator's to fix.
var ErrInvalidStepRun = errors.New("invalid StepRun")

const (
	// reservedDir holds every path pnsflow mounts into the containers; the CRD schema refuses
	// user mounts under it too.
	reservedDir = "/pnsflow"
	// reservedVolumePrefix starts every volume name pnsflow adds.
	reservedVolumePrefix = "pnsflow-"
	// outputsSizeLimit bounds the outputs emptyDir: it holds small values, and a runaway writer
	// should get the Pod evicted rather than fill the node's disk.
	outputsSizeLimit = "64Mi"
	// kubelet's own token volume (kube-api-access-*) is made of these, and client-go's in-cluster
	// config reads exactly these file names.
	tokenFile      = "token"
	rootCAConfig   = "kube-root-ca.crt"
	rootCAFile     = "ca.crt"
	namespaceFile  = "namespace"
	executorBinary = "/pns-executor"
	// terminationGraceSeconds gives the executor time, once kubelet stops it at main's exit, to
	// learn main's exit code and report it through an API server outage (its grace is 80 s).
	terminationGraceSeconds = 90
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidStepRun, fmt.Sprintf(format, args...))
}

// Build returns the Pod that runs sr. It neither reads nor changes anything but its arguments,
// and the Pod shares no memory with sr or cfg.
func Build(sr *v1alpha1.StepRun, cfg Config) (*corev1.Pod, error) {
	if sr == nil {
		return nil, errors.New("building Pod: nil StepRun")
	}
	pod, err := build(sr, cfg.withDefaults())
	if err != nil {
		return nil, fmt.Errorf("building Pod for StepRun %s/%s: %w", sr.Namespace, sr.Name, err)
	}
	return pod, nil
}

func build(sr *v1alpha1.StepRun, cfg Config) (*corev1.Pod, error) {
	if cfg.ExecutorImage == "" {
		return nil, errors.New("no executor image configured")
	}
	// The executor reports to the StepRun by these, and the API server refuses an owner
	// reference without a UID, so say it here rather than at create time.
	if sr.Name == "" || sr.Namespace == "" || sr.UID == "" {
		return nil, invalid("a StepRun needs a name, a namespace and a UID (has it been created?)")
	}
	// Work on a copy so the Pod shares no slices or maps with the (cached) StepRun.
	spec := sr.Spec.DeepCopy()
	if spec.Image == "" {
		return nil, invalid("spec.image is empty")
	}
	if err := validate(spec); err != nil {
		return nil, err
	}
	if err := validateInputs(spec); err != nil {
		return nil, err
	}
	if err := CheckInputKeys(sr, cfg.Repository); err != nil {
		return nil, err
	}
	addInputMounts(spec)
	if needsTmpVolume(spec) {
		spec.Volumes = append(spec.Volumes, corev1.Volume{
			Name:         executorconfig.TmpVolume,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
		})
		// Mounted like one of main's own volumes, so the executor mirrors it like them.
		spec.VolumeMounts = append(spec.VolumeMounts, corev1.VolumeMount{Name: executorconfig.TmpVolume, MountPath: tmpDir})
	}

	podName := PodName(sr.Name)
	// With automount, the ServiceAccount admission plugin already mounts kubelet's token into
	// every container (the executor included), so a second token at the same path would clash.
	automount := spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken
	executor, err := executorContainer(sr, spec, cfg, podName, !automount)
	if err != nil {
		return nil, err
	}
	initContainers := []corev1.Container{executor}
	if HasInputArtifacts(spec) {
		loader, err := loaderContainer(sr, cfg, credentialEnv(cfg.Repository))
		if err != nil {
			return nil, err
		}
		// First: the executor starts once the inputs are in place, and a failed load ends the Pod
		// before any of it ran.
		initContainers = append([]corev1.Container{loader}, initContainers...)
	}

	volumes := append(spec.Volumes, corev1.Volume{
		Name: executorconfig.OutputsVolume,
		VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse(outputsSizeLimit))},
		},
	})
	if !automount {
		volumes = append(volumes, tokenVolume(cfg.TokenExpirationSeconds))
	}

	serviceAccount := spec.ServiceAccountName
	if serviceAccount == "" {
		serviceAccount = cfg.ExecutorServiceAccount
	}

	return &corev1.Pod{
		// Set so the Pod can be sent as a server-side apply patch as it is.
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        podName,
			Namespace:   sr.Namespace,
			Labels:      podLabels(sr),
			Annotations: podAnnotations(sr),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         v1alpha1.GroupVersion.String(),
				Kind:               "StepRun",
				Name:               sr.Name,
				UID:                sr.UID,
				Controller:         new(true),
				BlockOwnerDeletion: new(true),
			}},
		},
		Spec: corev1.PodSpec{
			// The executor finds main through /proc, which needs one process namespace.
			ShareProcessNamespace:         new(true),
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  new(automount),
			ServiceAccountName:            serviceAccount,
			NodeSelector:                  spec.NodeSelector,
			Tolerations:                   withNodeLossTolerations(spec.Tolerations, cfg.NodeLostAfter),
			Affinity:                      spec.Affinity,
			ImagePullSecrets:              spec.ImagePullSecrets,
			SecurityContext:               spec.PodSecurityContext,
			ActiveDeadlineSeconds:         spec.ActiveDeadlineSeconds,
			TerminationGracePeriodSeconds: new(int64(terminationGraceSeconds)),
			// The executor is a native sidecar: kubelet starts it (after the loader, when the run
			// has input artifacts), starts main only once its startup probe passes, restarts it when it fails while main runs, and stops it after
			// main ends. The Pod's phase then follows main alone.
			InitContainers: initContainers,
			Containers:     []corev1.Container{mainContainer(spec, sr.UID)},
			Volumes:        volumes,
		},
	}, nil
}

// validate refuses what would collide with what pnsflow adds. The CRD schema refuses the reserved
// names and paths too; this is defence in depth for StepRuns that bypassed it (an older CRD).
func validate(spec *v1alpha1.StepRunSpec) error {
	volumes := make(map[string]bool, len(spec.Volumes))
	for i, v := range spec.Volumes {
		if strings.HasPrefix(v.Name, reservedVolumePrefix) {
			return invalid("spec.volumes[%d]: volume name %q: names starting with %q are reserved for pnsflow", i, v.Name, reservedVolumePrefix)
		}
		volumes[v.Name] = true
	}
	for i, m := range spec.VolumeMounts {
		if strings.HasPrefix(m.Name, reservedVolumePrefix) {
			return invalid("spec.volumeMounts[%d]: volume name %q: names starting with %q are reserved for pnsflow", i, m.Name, reservedVolumePrefix)
		}
		if p := path.Clean("/" + m.MountPath); p == reservedDir || strings.HasPrefix(p, reservedDir+"/") {
			return invalid("spec.volumeMounts[%d]: mountPath %q: paths under %s are reserved for pnsflow", i, m.MountPath, reservedDir)
		}
		if !volumes[m.Name] {
			return invalid("spec.volumeMounts[%d] (mountPath %q) names volume %q, which is not in spec.volumes", i, m.MountPath, m.Name)
		}
	}
	// main's marker must be the one pnsflow sets: a duplicate would leave it to kubelet's
	// ordering which value main sees, and server-side apply refuses duplicate env names.
	for i, e := range spec.Env {
		if e.Name == executorconfig.MarkerEnv || e.Name == executorconfig.OutputsEnv {
			return invalid("spec.env[%d]: %s is set by pnsflow", i, e.Name)
		}
	}
	return nil
}

// podLabels lets the controller select a StepRun's Pod, and a WorkflowRun's Pods, by label.
func podLabels(sr *v1alpha1.StepRun) map[string]string {
	labels := map[string]string{v1alpha1.LabelStepRun: LabelValue(sr.Name)}
	for _, key := range []string{v1alpha1.LabelWorkflowRun, v1alpha1.LabelStep} {
		if v, ok := sr.Labels[key]; ok {
			labels[key] = v
		}
	}
	return labels
}

// lastAppliedAnnotation is kubectl's copy of the whole applied object: no use on the Pod, and
// large.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// podAnnotations copies the StepRun's annotations to its Pod, as Tekton does for a TaskRun's:
// they are how users reach what acts on Pods (a mesh opting out, a runtime's pod_annotations).
func podAnnotations(sr *v1alpha1.StepRun) map[string]string {
	var out map[string]string
	for k, v := range sr.Annotations {
		if k == lastAppliedAnnotation {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(sr.Annotations))
		}
		out[k] = v
	}
	return out
}

// mainContainer is the user's container, passed through; pnsflow only adds the marker, the
// outputs directory and stdin.
func mainContainer(spec *v1alpha1.StepRunSpec, uid types.UID) corev1.Container {
	return corev1.Container{
		Name: executorconfig.MainContainer,
		// Command and Args stay exactly as given (nil included): in PNS mode the image's own
		// entrypoint runs, unwrapped.
		Image:      spec.Image,
		Command:    spec.Command,
		Args:       spec.Args,
		WorkingDir: spec.WorkingDir,
		EnvFrom:    spec.EnvFrom,
		Env: append(spec.Env,
			corev1.EnvVar{Name: executorconfig.MarkerEnv, Value: string(uid)},
			corev1.EnvVar{Name: executorconfig.OutputsEnv, Value: executorconfig.OutputsDir},
		),
		Resources: spec.Resources,
		VolumeMounts: append(spec.VolumeMounts, corev1.VolumeMount{
			Name:      executorconfig.OutputsVolume,
			MountPath: executorconfig.OutputsDir,
		}),
		ImagePullPolicy:          spec.ImagePullPolicy,
		SecurityContext:          spec.SecurityContext,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// The executor writes spec.stdin through the attach API and closes it; stdinOnce makes
		// that close reach main as EOF.
		Stdin:     spec.Stdin != nil,
		StdinOnce: spec.Stdin != nil,
	}
}

// executorContainer is the pns-executor sidecar. withToken adds the projected token mount.
func executorContainer(sr *v1alpha1.StepRun, spec *v1alpha1.StepRunSpec, cfg Config, podName string, withToken bool) (corev1.Container, error) {
	mounts := []corev1.VolumeMount{{
		Name:      executorconfig.OutputsVolume,
		MountPath: executorconfig.OutputsDir,
		ReadOnly:  true,
	}}
	cfgMounts := []executorconfig.Mount{{
		MainPath:     executorconfig.OutputsDir,
		ExecutorPath: executorconfig.OutputsDir,
	}}
	// main's volumes vanish from its held root when main exits (its mount namespace dies with
	// it), so the executor mounts each of them itself, whole and read-only.
	mirrored := make(map[string]bool, len(spec.VolumeMounts))
	for _, m := range spec.VolumeMounts {
		dir := path.Join(executorconfig.VolumesDir, m.Name)
		if !mirrored[m.Name] {
			mirrored[m.Name] = true
			mounts = append(mounts, corev1.VolumeMount{Name: m.Name, MountPath: dir, ReadOnly: true})
		}
		// subPathExpr expands main's environment variables at container start, which the
		// builder cannot know; outputs under such a mount are read through main's root instead.
		if m.SubPathExpr != "" {
			continue
		}
		cfgMounts = append(cfgMounts, executorconfig.Mount{
			// Cleaned so the executor can match output paths by plain prefix.
			MainPath:     path.Clean(m.MountPath),
			ExecutorPath: path.Join(dir, m.SubPath),
		})
	}
	if withToken {
		mounts = append(mounts, corev1.VolumeMount{
			Name:      executorconfig.TokenVolume,
			MountPath: executorconfig.TokenDir,
			ReadOnly:  true,
		})
	}

	artifacts, err := outputArtifacts(sr, cfg.Repository)
	if err != nil {
		return corev1.Container{}, err
	}
	var logs *executorconfig.LogArchive
	if ArchivesLogs(spec, cfg.Repository) {
		if cfg.Repository == nil {
			return corev1.Container{}, invalid("spec.archiveLogs: no artifact repository configured")
		}
		logs = &executorconfig.LogArchive{Key: ArtifactKey(cfg.Repository.KeyPrefix, sr.Namespace, sr.Name, v1alpha1.MainLogsArtifact)}
	}
	uploads := len(artifacts) > 0 || logs != nil
	var repo *executorconfig.Repository
	var credentials []corev1.EnvVar
	if uploads {
		repo, credentials = cfg.Repository, credentialEnv(cfg.Repository)
	}
	var outputs []executorconfig.Output
	if spec.Outputs != nil {
		for _, p := range spec.Outputs.Parameters {
			outputs = append(outputs, executorconfig.Output{Name: p.Name, Path: p.ValueFrom.Path, Default: p.Default})
		}
	}
	config, err := executorconfig.Config{
		StepRun:    sr.Name,
		Namespace:  sr.Namespace,
		UID:        string(sr.UID),
		Pod:        podName,
		Outputs:    outputs,
		Mounts:     cfgMounts,
		Stdin:      spec.Stdin != nil,
		Privilege:  ExecutorPrivileged(sr),
		Artifacts:  artifacts,
		Logs:       logs,
		Repository: repo,
	}.Encode()
	if err != nil {
		return corev1.Container{}, err
	}

	return corev1.Container{
		Name:            executorconfig.ExecutorContainer,
		Image:           cfg.ExecutorImage,
		ImagePullPolicy: cfg.ExecutorImagePullPolicy,
		Command:         []string{executorBinary, "run"},
		Env:             append([]corev1.EnvVar{{Name: executorconfig.ConfigEnv, Value: config}}, credentials...),
		// A native sidecar: restarted by kubelet whatever the Pod's restartPolicy.
		RestartPolicy: new(corev1.ContainerRestartPolicyAlways),
		// kubelet starts main only once this passes, so the /proc watcher exists first.
		StartupProbe:             startupProbe(cfg.ReadyTimeout),
		Resources:                executorResources(cfg.ExecutorResources, uploads),
		VolumeMounts:             mounts,
		SecurityContext:          executorSecurityContext(sr),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}, nil
}

// startupProbe passes once the executor watches /proc: it connects to the port the executor
// listens on from then (see executor.ReadySignal). The kubelet dials it itself, so a try costs the
// executor nothing; readyTimeout bounds the whole startup, after which kubelet restarts the
// executor.
func startupProbe(readyTimeout time.Duration) *corev1.Probe {
	const period = 1 // seconds: the shortest period kubelet allows
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
			Port: intstr.FromInt32(executorconfig.ReadyPort),
		}},
		PeriodSeconds:    period,
		TimeoutSeconds:   period,
		SuccessThreshold: 1,
		FailureThreshold: int32(max(1, readyTimeout/(period*time.Second))),
	}
}

// tokenVolume has the shape of kubelet's kube-api-access volume, so client-go's in-cluster
// config works unchanged in the executor, yet it is mounted into the executor alone: main never
// holds the credential that writes StepRun status.
func tokenVolume(expirationSeconds int64) corev1.Volume {
	return corev1.Volume{
		Name: executorconfig.TokenVolume,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			// The API server's default, spelled out so the built Pod equals the stored one.
			DefaultMode: new(int32(0o644)),
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Path:              tokenFile,
					ExpirationSeconds: new(expirationSeconds),
				}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: rootCAConfig},
					Items:                []corev1.KeyToPath{{Key: rootCAFile, Path: rootCAFile}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{
					Items: []corev1.DownwardAPIVolumeFile{{
						Path:     namespaceFile,
						FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
					}},
				}},
			},
		}},
	}
}
