package podspec

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

func TestNeedsTmpVolume(t *testing.T) {
	param := func(p string) v1alpha1.OutputParameter {
		return v1alpha1.OutputParameter{Name: "p", ValueFrom: v1alpha1.OutputValueFrom{Path: p}}
	}
	mount := func(p string) corev1.VolumeMount { return corev1.VolumeMount{Name: "v", MountPath: p} }
	tests := []struct {
		name    string
		outputs *v1alpha1.Outputs
		mounts  []corev1.VolumeMount
		want    bool
	}{
		{"no outputs", nil, nil, false},
		{"a parameter under /tmp", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/tmp/out")}}, nil, true},
		{"deep under /tmp", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/tmp/a/b/out")}}, nil, true},
		{"an artifact under /tmp", &v1alpha1.Outputs{Artifacts: []v1alpha1.OutputArtifact{{Name: "a", Path: "/tmp/dir"}}}, nil, true},
		{"elsewhere in the image", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/work/out")}}, nil, false},
		{"a sibling of /tmp", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/tmpfoo/out")}}, nil, false},
		{"dot-dot out of /tmp", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/tmp/../etc/out")}}, nil, false},
		{"under /pnsflow/outputs", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/pnsflow/outputs/x")}}, nil, false},
		{"main mounts /tmp", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/tmp/out")}}, []corev1.VolumeMount{mount("/tmp/")}, false},
		{"the output is on main's volume under /tmp", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/tmp/data/out")}},
			[]corev1.VolumeMount{mount("/tmp/data")}, false},
		{"a volume under /tmp elsewhere", &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{param("/tmp/out")}},
			[]corev1.VolumeMount{mount("/tmp/data")}, true},
		{"opted out", &v1alpha1.Outputs{KeepImageTmp: true, Parameters: []v1alpha1.OutputParameter{param("/tmp/out")}}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &v1alpha1.StepRunSpec{Outputs: tt.outputs, VolumeMounts: tt.mounts}
			if got := needsTmpVolume(spec); got != tt.want {
				t.Errorf("needsTmpVolume = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTmpOutputsGetAnEmptyDirBothContainersMount(t *testing.T) {
	sr := stepRun(func(sr *v1alpha1.StepRun) {
		sr.Spec.Outputs = &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{
			{Name: "v", ValueFrom: v1alpha1.OutputValueFrom{Path: "/tmp/v"}},
		}}
	})
	pod := mustBuild(t, sr, testCfg)
	var vol *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == executorconfig.TmpVolume {
			vol = &pod.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.EmptyDir == nil {
		t.Fatalf("no emptyDir %s in %+v", executorconfig.TmpVolume, pod.Spec.Volumes)
	}
	hasMount := func(c corev1.Container, path string, readOnly bool) bool {
		for _, m := range c.VolumeMounts {
			if m.Name == executorconfig.TmpVolume && m.MountPath == path && m.ReadOnly == readOnly {
				return true
			}
		}
		return false
	}
	if !hasMount(container(t, pod, executorconfig.MainContainer), "/tmp", false) {
		t.Errorf("main does not mount %s at /tmp: %+v", executorconfig.TmpVolume, container(t, pod, executorconfig.MainContainer).VolumeMounts)
	}
	mirror := executorconfig.VolumesDir + "/" + executorconfig.TmpVolume
	if !hasMount(container(t, pod, executorconfig.ExecutorContainer), mirror, true) {
		t.Errorf("the executor does not mount %s read-only at %s", executorconfig.TmpVolume, mirror)
	}
	found := false
	for _, m := range executorConfig(t, pod).Mounts {
		found = found || m == executorconfig.Mount{MainPath: "/tmp", ExecutorPath: mirror}
	}
	if !found {
		t.Errorf("the executor's config does not map /tmp to %s: %+v", mirror, executorConfig(t, pod).Mounts)
	}
	// The user's spec is not changed by it.
	if len(sr.Spec.Volumes) != 0 || len(sr.Spec.VolumeMounts) != 0 {
		t.Errorf("Build changed the StepRun's volumes: %+v %+v", sr.Spec.Volumes, sr.Spec.VolumeMounts)
	}
}
