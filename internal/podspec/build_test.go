package podspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// testCfg is the smallest valid Config; everything else is defaulted.
var testCfg = Config{ExecutorImage: "pnsflow/executor:test"}

type option func(*v1alpha1.StepRun)

// stepRun returns a minimal created StepRun changed by opts.
func stepRun(opts ...option) *v1alpha1.StepRun {
	sr := &v1alpha1.StepRun{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "team-a", UID: "uid-1"},
		Spec:       v1alpha1.StepRunSpec{Image: "busybox:1.37"},
	}
	for _, o := range opts {
		o(sr)
	}
	return sr
}

func withIDs(cUID, cGID, pUID, pGID *int64) option {
	return func(sr *v1alpha1.StepRun) {
		if cUID != nil || cGID != nil {
			sr.Spec.SecurityContext = &corev1.SecurityContext{RunAsUser: cUID, RunAsGroup: cGID}
		}
		if pUID != nil || pGID != nil {
			sr.Spec.PodSecurityContext = &corev1.PodSecurityContext{RunAsUser: pUID, RunAsGroup: pGID}
		}
	}
}

func withVolumes(mounts ...corev1.VolumeMount) option {
	return func(sr *v1alpha1.StepRun) {
		seen := map[string]bool{}
		for _, m := range mounts {
			if !seen[m.Name] {
				seen[m.Name] = true
				sr.Spec.Volumes = append(sr.Spec.Volumes, corev1.Volume{Name: m.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			}
		}
		sr.Spec.VolumeMounts = mounts
	}
}

func mustBuild(t *testing.T, sr *v1alpha1.StepRun, cfg Config) *corev1.Pod {
	t.Helper()
	pod, err := Build(sr, cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return pod
}

func container(t *testing.T, pod *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func executorConfig(t *testing.T, pod *corev1.Pod) executorconfig.Config {
	t.Helper()
	c, err := executorconfig.Decode(envValue(t, container(t, pod, executorconfig.ExecutorContainer), executorconfig.ConfigEnv))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// envValue is the value of c's env var name; the test fails without it.
func envValue(t *testing.T, c corev1.Container, name string) string {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	t.Fatalf("container %s has no %s", c.Name, name)
	return ""
}

func volumeNames(pod *corev1.Pod) []string {
	var names []string
	for _, v := range pod.Spec.Volumes {
		names = append(names, v.Name)
	}
	return names
}

// TestBuildMinimal pins the whole Pod for the smallest StepRun.
func TestBuildMinimal(t *testing.T) {
	pod := mustBuild(t, stepRun(), testCfg)
	cfgJSON, err := executorconfig.Config{
		StepRun: "hello", Namespace: "team-a", UID: "uid-1", Pod: "hello-pod",
		Mounts:    []executorconfig.Mount{{MainPath: "/pnsflow/outputs", ExecutorPath: "/pnsflow/outputs"}},
		Privilege: ExecutorPrivileged(stepRun()),
	}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "hello-pod", Namespace: "team-a",
			Labels: map[string]string{v1alpha1.LabelStepRun: "hello"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "workflows.pnsflow.dev/v1alpha1", Kind: "StepRun", Name: "hello", UID: "uid-1",
				Controller: new(true), BlockOwnerDeletion: new(true),
			}},
		},
		Spec: corev1.PodSpec{
			ShareProcessNamespace:         new(true),
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64(90)),
			AutomountServiceAccountToken:  new(false),
			ServiceAccountName:            "pnsflow-executor",
			Tolerations:                   nodeLoss(60),
			InitContainers: []corev1.Container{{
				Name:          "pns-executor",
				Image:         "pnsflow/executor:test",
				Command:       []string{"/pns-executor", "run"},
				Env:           []corev1.EnvVar{{Name: executorconfig.ConfigEnv, Value: cfgJSON}},
				RestartPolicy: new(corev1.ContainerRestartPolicyAlways),
				StartupProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
						Port: intstr.FromInt32(executorconfig.ReadyPort),
					}},
					PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 30,
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "pnsflow-outputs", MountPath: "/pnsflow/outputs", ReadOnly: true},
					{Name: "pnsflow-executor-token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
				},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: new(int64(0)), RunAsNonRoot: new(false), ReadOnlyRootFilesystem: new(true),
				},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "busybox:1.37",
				Env: []corev1.EnvVar{
					{Name: "PNSFLOW_STEPRUN_UID", Value: "uid-1"},
					{Name: "PNSFLOW_OUTPUTS", Value: "/pnsflow/outputs"},
				},
				VolumeMounts:             []corev1.VolumeMount{{Name: "pnsflow-outputs", MountPath: "/pnsflow/outputs"}},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: []corev1.Volume{{
				Name:         "pnsflow-outputs",
				VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse("64Mi"))}},
			}, {
				Name: "pnsflow-executor-token",
				VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					DefaultMode: new(int32(0o644)),
					Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(int64(3600))}},
						{ConfigMap: &corev1.ConfigMapProjection{
							LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
							Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
						}},
						{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
							Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
						}}}},
					},
				}},
			}},
		},
	}
	if diff := cmp.Diff(want, pod); diff != "" {
		t.Errorf("Pod (-want +got):\n%s", diff)
	}
}

func TestBuildIsPure(t *testing.T) {
	sr := stepRun(withIDs(new(int64(1000)), new(int64(1000)), nil, nil),
		withVolumes(corev1.VolumeMount{Name: "data", MountPath: "/data"}),
		func(sr *v1alpha1.StepRun) { sr.Spec.Env = []corev1.EnvVar{{Name: "A", Value: "1"}} })
	before := sr.DeepCopy()
	first := mustBuild(t, sr, testCfg)
	if diff := cmp.Diff(before, sr); diff != "" {
		t.Errorf("Build changed the StepRun (-before +after):\n%s", diff)
	}
	// Changing the Pod must not reach the StepRun (no shared slices).
	first.Spec.Containers[0].Env[0].Value = "changed"
	first.Spec.Volumes[0].Name = "changed"
	if diff := cmp.Diff(before, sr); diff != "" {
		t.Errorf("the Pod shares memory with the StepRun (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(mustBuild(t, sr, testCfg), mustBuild(t, sr, testCfg)); diff != "" {
		t.Errorf("Build is not deterministic:\n%s", diff)
	}
}

func TestStdin(t *testing.T) {
	tests := []struct {
		name  string
		stdin *string
		want  bool
	}{
		{"unset", nil, false},
		{"empty", new(""), true},
		{"set", new("hello\n"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := mustBuild(t, stepRun(func(sr *v1alpha1.StepRun) { sr.Spec.Stdin = tt.stdin }), testCfg)
			main := container(t, pod, executorconfig.MainContainer)
			if main.Stdin != tt.want || main.StdinOnce != tt.want || main.TTY {
				t.Errorf("main stdin=%v stdinOnce=%v tty=%v, want %v %v false", main.Stdin, main.StdinOnce, main.TTY, tt.want, tt.want)
			}
			if got := executorConfig(t, pod).Stdin; got != tt.want {
				t.Errorf("executor config Stdin = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestToken(t *testing.T) {
	tests := []struct {
		name          string
		automount     *bool
		wantAutomount bool
		wantVolumes   []string
		wantExecutor  []string // executor mount paths
	}{
		{"default", nil, false,
			[]string{"pnsflow-outputs", "pnsflow-executor-token"},
			[]string{"/pnsflow/outputs", "/var/run/secrets/kubernetes.io/serviceaccount"}},
		{"false", new(false), false,
			[]string{"pnsflow-outputs", "pnsflow-executor-token"},
			[]string{"/pnsflow/outputs", "/var/run/secrets/kubernetes.io/serviceaccount"}},
		// kubelet mounts its own token into every container; a second one would clash.
		{"automount", new(true), true,
			[]string{"pnsflow-outputs"},
			[]string{"/pnsflow/outputs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := mustBuild(t, stepRun(func(sr *v1alpha1.StepRun) { sr.Spec.AutomountServiceAccountToken = tt.automount }), testCfg)
			if diff := cmp.Diff(new(tt.wantAutomount), pod.Spec.AutomountServiceAccountToken); diff != "" {
				t.Errorf("automountServiceAccountToken (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantVolumes, volumeNames(pod)); diff != "" {
				t.Errorf("volumes (-want +got):\n%s", diff)
			}
			var paths []string
			for _, m := range container(t, pod, executorconfig.ExecutorContainer).VolumeMounts {
				paths = append(paths, m.MountPath)
				if !m.ReadOnly {
					t.Errorf("executor mount %s is read-write", m.MountPath)
				}
			}
			if diff := cmp.Diff(tt.wantExecutor, paths); diff != "" {
				t.Errorf("executor mounts (-want +got):\n%s", diff)
			}
			for _, m := range container(t, pod, executorconfig.MainContainer).VolumeMounts {
				if m.Name == executorconfig.TokenVolume || m.MountPath == executorconfig.TokenDir {
					t.Errorf("main mounts the token: %+v", m)
				}
			}
		})
	}
}

func TestVolumes(t *testing.T) {
	outputs := executorconfig.Mount{MainPath: "/pnsflow/outputs", ExecutorPath: "/pnsflow/outputs"}
	tests := []struct {
		name         string
		mounts       []corev1.VolumeMount
		wantExecutor []corev1.VolumeMount // after the outputs mount, before the token
		wantMounts   []executorconfig.Mount
	}{
		{"none", nil, nil, []executorconfig.Mount{outputs}},
		{"one",
			[]corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			[]corev1.VolumeMount{{Name: "data", MountPath: "/pnsflow/volumes/data", ReadOnly: true}},
			[]executorconfig.Mount{outputs, {MainPath: "/data", ExecutorPath: "/pnsflow/volumes/data"}}},
		{"read-only in main too, path cleaned",
			[]corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/app/", ReadOnly: true}},
			[]corev1.VolumeMount{{Name: "cfg", MountPath: "/pnsflow/volumes/cfg", ReadOnly: true}},
			[]executorconfig.Mount{outputs, {MainPath: "/etc/app", ExecutorPath: "/pnsflow/volumes/cfg"}}},
		{"subPath, one volume mounted twice",
			[]corev1.VolumeMount{
				{Name: "data", MountPath: "/in", SubPath: "in"},
				{Name: "data", MountPath: "/out", SubPath: "a/out"},
			},
			[]corev1.VolumeMount{{Name: "data", MountPath: "/pnsflow/volumes/data", ReadOnly: true}},
			[]executorconfig.Mount{outputs,
				{MainPath: "/in", ExecutorPath: "/pnsflow/volumes/data/in"},
				{MainPath: "/out", ExecutorPath: "/pnsflow/volumes/data/a/out"}}},
		{"subPathExpr left out of the map",
			[]corev1.VolumeMount{
				{Name: "logs", MountPath: "/logs", SubPathExpr: "$(POD_NAME)"},
				{Name: "data", MountPath: "/data"},
			},
			[]corev1.VolumeMount{
				{Name: "logs", MountPath: "/pnsflow/volumes/logs", ReadOnly: true},
				{Name: "data", MountPath: "/pnsflow/volumes/data", ReadOnly: true},
			},
			[]executorconfig.Mount{outputs, {MainPath: "/data", ExecutorPath: "/pnsflow/volumes/data"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr := stepRun(withVolumes(tt.mounts...), func(sr *v1alpha1.StepRun) {
				// A volume main does not mount is not mirrored.
				sr.Spec.Volumes = append(sr.Spec.Volumes, corev1.Volume{Name: "unused"})
			})
			pod := mustBuild(t, sr, testCfg)

			wantExecutor := append([]corev1.VolumeMount{{Name: "pnsflow-outputs", MountPath: "/pnsflow/outputs", ReadOnly: true}}, tt.wantExecutor...)
			wantExecutor = append(wantExecutor, corev1.VolumeMount{Name: "pnsflow-executor-token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
			if diff := cmp.Diff(wantExecutor, container(t, pod, executorconfig.ExecutorContainer).VolumeMounts); diff != "" {
				t.Errorf("executor mounts (-want +got):\n%s", diff)
			}
			wantMain := append(append([]corev1.VolumeMount(nil), tt.mounts...), corev1.VolumeMount{Name: "pnsflow-outputs", MountPath: "/pnsflow/outputs"})
			if diff := cmp.Diff(wantMain, container(t, pod, executorconfig.MainContainer).VolumeMounts); diff != "" {
				t.Errorf("main mounts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMounts, executorConfig(t, pod).Mounts); diff != "" {
				t.Errorf("executor config Mounts (-want +got):\n%s", diff)
			}
			wantVolumes := []string{}
			for _, v := range sr.Spec.Volumes {
				wantVolumes = append(wantVolumes, v.Name)
			}
			wantVolumes = append(wantVolumes, "pnsflow-outputs", "pnsflow-executor-token")
			if diff := cmp.Diff(wantVolumes, volumeNames(pod)); diff != "" {
				t.Errorf("volumes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMainPassThrough(t *testing.T) {
	marker := []corev1.EnvVar{
		{Name: "PNSFLOW_STEPRUN_UID", Value: "uid-1"},
		{Name: "PNSFLOW_OUTPUTS", Value: "/pnsflow/outputs"},
	}
	tests := []struct {
		name string
		opt  option
		want corev1.Container
	}{
		{"command and args nil stay nil", func(*v1alpha1.StepRun) {}, corev1.Container{
			Name: "main", Image: "busybox:1.37", Env: marker,
			VolumeMounts:             []corev1.VolumeMount{{Name: "pnsflow-outputs", MountPath: "/pnsflow/outputs"}},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}},
		{"every field", func(sr *v1alpha1.StepRun) {
			s := &sr.Spec
			s.Command = []string{"sh", "-c"}
			s.Args = []string{"echo hi > /pnsflow/outputs/x"}
			s.Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
			s.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}
			s.WorkingDir = "/work"
			s.ImagePullPolicy = corev1.PullAlways
			s.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
			s.SecurityContext = &corev1.SecurityContext{Privileged: new(true), RunAsUser: new(int64(5))}
		}, corev1.Container{
			Name: "main", Image: "busybox:1.37",
			Command:                  []string{"sh", "-c"},
			Args:                     []string{"echo hi > /pnsflow/outputs/x"},
			Env:                      append([]corev1.EnvVar{{Name: "A", Value: "1"}}, marker...),
			EnvFrom:                  []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
			WorkingDir:               "/work",
			ImagePullPolicy:          corev1.PullAlways,
			Resources:                corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
			SecurityContext:          &corev1.SecurityContext{Privileged: new(true), RunAsUser: new(int64(5))},
			VolumeMounts:             []corev1.VolumeMount{{Name: "pnsflow-outputs", MountPath: "/pnsflow/outputs"}},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := mustBuild(t, stepRun(tt.opt), testCfg)
			if diff := cmp.Diff(tt.want, container(t, pod, executorconfig.MainContainer)); diff != "" {
				t.Errorf("main (-want +got):\n%s", diff)
			}
			if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != executorconfig.ExecutorContainer {
				t.Errorf("init containers = %v, want the executor alone", pod.Spec.InitContainers)
			}
			if len(pod.Spec.Containers) != 1 {
				t.Errorf("containers = %d, want main alone", len(pod.Spec.Containers))
			}
		})
	}
}

func TestPodLevel(t *testing.T) {
	tests := []struct {
		name string
		opt  option
		want func(*corev1.PodSpec) // applied to the minimal Pod's spec
	}{
		{"activeDeadlineSeconds", func(sr *v1alpha1.StepRun) { sr.Spec.ActiveDeadlineSeconds = new(int64(60)) },
			func(p *corev1.PodSpec) { p.ActiveDeadlineSeconds = new(int64(60)) }},
		{"service account", func(sr *v1alpha1.StepRun) { sr.Spec.ServiceAccountName = "runner" },
			func(p *corev1.PodSpec) { p.ServiceAccountName = "runner" }},
		{"scheduling and pull secrets", func(sr *v1alpha1.StepRun) {
			sr.Spec.NodeSelector = map[string]string{"disk": "ssd"}
			sr.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
			sr.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
			sr.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "reg"}}
		}, func(p *corev1.PodSpec) {
			p.NodeSelector = map[string]string{"disk": "ssd"}
			p.Tolerations = append([]corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}, nodeLoss(60)...)
			p.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
			p.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "reg"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := mustBuild(t, stepRun(), testCfg).Spec
			tt.want(&want)
			if diff := cmp.Diff(want, mustBuild(t, stepRun(tt.opt), testCfg).Spec); diff != "" {
				t.Errorf("Pod spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabelsAndOwner(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   map[string]string
	}{
		{"none", nil, map[string]string{v1alpha1.LabelStepRun: "hello"}},
		{"workflow labels copied, others not",
			map[string]string{v1alpha1.LabelWorkflowRun: "wf", v1alpha1.LabelStep: "build", "team": "a", v1alpha1.LabelStepRun: "other"},
			map[string]string{v1alpha1.LabelStepRun: "hello", v1alpha1.LabelWorkflowRun: "wf", v1alpha1.LabelStep: "build"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := mustBuild(t, stepRun(func(sr *v1alpha1.StepRun) { sr.Labels = tt.labels }), testCfg)
			if diff := cmp.Diff(tt.want, pod.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			want := []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "StepRun", Name: "hello", UID: "uid-1",
				Controller: new(true), BlockOwnerDeletion: new(true),
			}}
			if diff := cmp.Diff(want, pod.OwnerReferences); diff != "" {
				t.Errorf("owner references (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnnotationsCopiedExceptKubectlsLastApplied(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        map[string]string
	}{
		{"none", nil, nil},
		{"only last-applied", map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"}, nil},
		{"copied", map[string]string{"fault.pnsflow.dev/fail-create-once": "pns-executor", "team": "a",
			"kubectl.kubernetes.io/last-applied-configuration": "{}"},
			map[string]string{"fault.pnsflow.dev/fail-create-once": "pns-executor", "team": "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr := stepRun(func(sr *v1alpha1.StepRun) { sr.Annotations = tt.annotations })
			pod := mustBuild(t, sr, testCfg)
			if diff := cmp.Diff(tt.want, pod.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if len(tt.want) > 0 {
				pod.Annotations["x"] = "changed"
				if _, shared := sr.Annotations["x"]; shared {
					t.Error("the Pod's annotations share a map with the StepRun's")
				}
			}
		})
	}
}

func TestExecutorConfig(t *testing.T) {
	sr := stepRun(func(sr *v1alpha1.StepRun) {
		sr.Spec.Outputs = &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{
			{Name: "a", ValueFrom: v1alpha1.OutputValueFrom{Path: "/pnsflow/outputs/a"}},
			{Name: "b", ValueFrom: v1alpha1.OutputValueFrom{Path: "/tmp/b"}, Default: new("none")},
		}}
	})
	want := executorconfig.Config{
		StepRun: "hello", Namespace: "team-a", UID: "uid-1", Pod: "hello-pod",
		Outputs: []executorconfig.Output{
			{Name: "a", Path: "/pnsflow/outputs/a"},
			{Name: "b", Path: "/tmp/b", Default: new("none")},
		},
		Mounts: []executorconfig.Mount{
			{MainPath: "/pnsflow/outputs", ExecutorPath: "/pnsflow/outputs"},
			// /tmp/b is collected from an emptyDir the executor mounts too.
			{MainPath: "/tmp", ExecutorPath: "/pnsflow/volumes/pnsflow-tmp"},
		},
		Privilege: ExecutorPrivileged(sr),
	}
	if diff := cmp.Diff(want, executorConfig(t, mustBuild(t, sr, testCfg))); diff != "" {
		t.Errorf("executor config (-want +got):\n%s", diff)
	}
}

func TestConfig(t *testing.T) {
	custom := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}}
	tests := []struct {
		name           string
		cfg            Config
		wantSA         string
		wantPull       corev1.PullPolicy
		wantExpiration int64
		wantFailures   int32
		wantResources  corev1.ResourceRequirements
	}{
		{"defaults", testCfg, "pnsflow-executor", "", 3600, 30, DefaultExecutorResources()},
		{"set", Config{
			ExecutorImage: "x", ExecutorImagePullPolicy: corev1.PullIfNotPresent, ExecutorServiceAccount: "exec",
			TokenExpirationSeconds: 7200, ReadyTimeout: 90 * time.Second, ExecutorResources: custom,
		}, "exec", corev1.PullIfNotPresent, 7200, 90, custom},
		{"token below the minimum", Config{ExecutorImage: "x", TokenExpirationSeconds: 60},
			"pnsflow-executor", "", 600, 30, DefaultExecutorResources()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := mustBuild(t, stepRun(), tt.cfg)
			exec := container(t, pod, executorconfig.ExecutorContainer)
			if pod.Spec.ServiceAccountName != tt.wantSA {
				t.Errorf("serviceAccountName = %q, want %q", pod.Spec.ServiceAccountName, tt.wantSA)
			}
			if exec.Image != tt.cfg.ExecutorImage || exec.ImagePullPolicy != tt.wantPull {
				t.Errorf("executor image %q %q, want %q %q", exec.Image, exec.ImagePullPolicy, tt.cfg.ExecutorImage, tt.wantPull)
			}
			token := pod.Spec.Volumes[len(pod.Spec.Volumes)-1].Projected.Sources[0].ServiceAccountToken
			if diff := cmp.Diff(new(tt.wantExpiration), token.ExpirationSeconds); diff != "" {
				t.Errorf("token expirationSeconds (-want +got):\n%s", diff)
			}
			if got := exec.StartupProbe.FailureThreshold; got != tt.wantFailures {
				t.Errorf("startup probe failureThreshold = %d, want %d (ReadyTimeout at one try a second)", got, tt.wantFailures)
			}
			if diff := cmp.Diff(tt.wantResources, exec.Resources); diff != "" {
				t.Errorf("executor resources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNames(t *testing.T) {
	longest := strings.Repeat("ab-c.", 49) + "xyzw" // 249 characters, the longest StepRun name
	tests := []struct {
		name, in, wantPod, wantLabel string // want "" means: only check validity and length
	}{
		{"short", "hello", "hello-pod", "hello"},
		{"longest StepRun name", longest, longest + "-pod", ""},
		{"63-character label", strings.Repeat("x", 63), "", strings.Repeat("x", 63)},
		{"64-character label", strings.Repeat("x", 64), "", strings.Repeat("x", 52) + "-" + shortHash(strings.Repeat("x", 64))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, label := PodName(tt.in), LabelValue(tt.in)
			if errs := validation.IsDNS1123Subdomain(pod); len(errs) > 0 {
				t.Errorf("PodName(%q) = %q: %v", tt.in, pod, errs)
			}
			if errs := validation.IsValidLabelValue(label); len(errs) > 0 {
				t.Errorf("LabelValue(%q) = %q: %v", tt.in, label, errs)
			}
			if tt.wantPod != "" && pod != tt.wantPod {
				t.Errorf("PodName = %q, want %q", pod, tt.wantPod)
			}
			if tt.wantLabel != "" && label != tt.wantLabel {
				t.Errorf("LabelValue = %q, want %q", label, tt.wantLabel)
			}
			if PodName(tt.in) != pod || LabelValue(tt.in) != label {
				t.Error("not deterministic")
			}
		})
	}
	// The cap is exactly what keeps the Pod's name a DNS subdomain without a hash.
	if MaxStepRunNameLength != len(longest) || len(PodName(longest)) != validation.DNS1123SubdomainMaxLength {
		t.Errorf("MaxStepRunNameLength = %d, PodName of the longest name has %d characters", MaxStepRunNameLength, len(PodName(longest)))
	}
	// Long names that share a prefix still get distinct label values.
	a, b := longest[:248]+"1", longest[:248]+"2"
	if LabelValue(a) == LabelValue(b) {
		t.Errorf("label values collide: %q", LabelValue(a))
	}
	// Build uses them.
	sr := stepRun(func(sr *v1alpha1.StepRun) { sr.Name = longest })
	pod := mustBuild(t, sr, testCfg)
	if pod.Name != PodName(longest) || pod.Labels[v1alpha1.LabelStepRun] != LabelValue(longest) || executorConfig(t, pod).Pod != pod.Name {
		t.Errorf("Build used name %q label %q", pod.Name, pod.Labels[v1alpha1.LabelStepRun])
	}
}

func TestLabelValueSanitizes(t *testing.T) {
	for _, in := range []string{"a/b", "-x-", "__", "ü", strings.Repeat("-", 70), ""} {
		if errs := validation.IsValidLabelValue(LabelValue(in)); len(errs) > 0 {
			t.Errorf("LabelValue(%q) = %q: %v", in, LabelValue(in), errs)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name        string
		sr          *v1alpha1.StepRun
		cfg         Config
		wantInvalid bool
		wantMessage string
	}{
		{"nil StepRun", nil, testCfg, false, "nil StepRun"},
		{"no executor image", stepRun(), Config{}, false, "no executor image"},
		{"no image", stepRun(func(sr *v1alpha1.StepRun) { sr.Spec.Image = "" }), testCfg, true, "spec.image is empty"},
		{"no UID", stepRun(func(sr *v1alpha1.StepRun) { sr.UID = "" }), testCfg, true, "UID"},
		{"no namespace", stepRun(func(sr *v1alpha1.StepRun) { sr.Namespace = "" }), testCfg, true, "namespace"},
		{"reserved volume name",
			stepRun(withVolumes(corev1.VolumeMount{Name: "pnsflow-outputs", MountPath: "/data"})), testCfg, true, `"pnsflow-outputs"`},
		{"reserved volume name, unmounted",
			stepRun(func(sr *v1alpha1.StepRun) { sr.Spec.Volumes = []corev1.Volume{{Name: "pnsflow-x"}} }), testCfg, true, `spec.volumes[0]`},
		{"mount at /pnsflow",
			stepRun(withVolumes(corev1.VolumeMount{Name: "data", MountPath: "/pnsflow"})), testCfg, true, "reserved"},
		{"mount under /pnsflow",
			stepRun(withVolumes(corev1.VolumeMount{Name: "data", MountPath: "/x/../pnsflow/outputs/"})), testCfg, true, "reserved"},
		{"mount of a missing volume",
			stepRun(func(sr *v1alpha1.StepRun) {
				sr.Spec.VolumeMounts = []corev1.VolumeMount{{Name: "gone", MountPath: "/data"}}
			}),
			testCfg, true, `names volume "gone", which is not in spec.volumes`},
		{"marker env set by the user",
			stepRun(func(sr *v1alpha1.StepRun) { sr.Spec.Env = []corev1.EnvVar{{Name: executorconfig.MarkerEnv}} }),
			testCfg, true, "set by pnsflow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, err := Build(tt.sr, tt.cfg)
			if err == nil {
				t.Fatalf("Build = %v, want an error", pod.Name)
			}
			if pod != nil {
				t.Error("Build returned a Pod with its error")
			}
			if !strings.Contains(err.Error(), tt.wantMessage) {
				t.Errorf("error %q does not contain %q", err, tt.wantMessage)
			}
			if got := errors.Is(err, ErrInvalidStepRun); got != tt.wantInvalid {
				t.Errorf("errors.Is(ErrInvalidStepRun) = %v, want %v (%v)", got, tt.wantInvalid, err)
			}
			if tt.sr != nil && !strings.Contains(err.Error(), "team-a/hello") && tt.name != "no namespace" {
				t.Errorf("error %q does not name the StepRun", err)
			}
		})
	}
}
