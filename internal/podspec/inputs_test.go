package podspec

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

var inputRepo = &executorconfig.Repository{Endpoint: "s3:8333", Bucket: "b", Region: "us-east-1", PathStyle: true, KeyPrefix: "p", SecretName: "creds"}

func withInputs(a ...v1alpha1.InputArtifact) option {
	return func(sr *v1alpha1.StepRun) {
		if sr.Spec.Inputs == nil {
			sr.Spec.Inputs = &v1alpha1.Inputs{}
		}
		sr.Spec.Inputs.Artifacts = append(sr.Spec.Inputs.Artifacts, a...)
	}
}

func inputCfg() Config {
	cfg := testCfg
	cfg.Repository = inputRepo
	return cfg
}

func loaderConfig(t *testing.T, c corev1.Container) executorconfig.LoaderConfig {
	t.Helper()
	cfg, err := executorconfig.DecodeLoader(envValue(t, c, executorconfig.LoaderConfigEnv))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func initNames(pod *corev1.Pod) []string {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	return names
}

func TestARunWithoutInputsHasNoLoader(t *testing.T) {
	for name, sr := range map[string]*v1alpha1.StepRun{
		"no inputs": stepRun(),
		"only parameters": stepRun(func(sr *v1alpha1.StepRun) {
			sr.Spec.Inputs = &v1alpha1.Inputs{Parameters: []v1alpha1.InputParameter{{Name: "a"}}}
		}),
		"only output files": stepRun(withArtifacts(v1alpha1.OutputArtifact{Name: "o", Path: "/o"})),
	} {
		pod := mustBuild(t, sr, inputCfg())
		if diff := cmp.Diff([]string{executorconfig.ExecutorContainer}, initNames(pod)); diff != "" {
			t.Errorf("%s: init containers (-want +got):\n%s", name, diff)
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name == executorconfig.InputsVolume {
				t.Errorf("%s: the Pod has the inputs volume", name)
			}
		}
	}
}

func TestInputsAreLoadedBeforeTheExecutorAndMountedIntoMain(t *testing.T) {
	sr := stepRun(withIDs(new(int64(1000)), new(int64(3000)), nil, nil), withInputs(
		v1alpha1.InputArtifact{Name: "tree", Path: "/work/in/", Key: "p/team-a/prev/tree"},
		v1alpha1.InputArtifact{Name: "file", Path: "/data.csv", Key: "p/team-a/prev/file", Archive: "none", Optional: true},
	))
	pod := mustBuild(t, sr, inputCfg())

	if diff := cmp.Diff([]string{executorconfig.LoaderContainer, executorconfig.ExecutorContainer}, initNames(pod)); diff != "" {
		t.Fatalf("init containers (-want +got):\n%s", diff)
	}
	loader := pod.Spec.InitContainers[0]
	want := executorconfig.LoaderConfig{Repository: *inputRepo, Inputs: []executorconfig.Input{
		{Name: "tree", Key: "p/team-a/prev/tree", Dest: "/pnsflow/inputs/tree"},
		{Name: "file", Key: "p/team-a/prev/file", Dest: "/pnsflow/inputs/file", Archive: "none", Optional: true},
	}}
	if diff := cmp.Diff(want, loaderConfig(t, loader)); diff != "" {
		t.Errorf("loader config (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{executorBinary, "load"}, loader.Command); diff != "" {
		t.Errorf("loader command (-want +got):\n%s", diff)
	}
	if loader.RestartPolicy != nil {
		t.Error("the loader must be a plain init container that runs once, not a sidecar")
	}

	// main sees each input at its path, from the inputs volume.
	main := container(t, pod, executorconfig.MainContainer)
	got := map[string]string{}
	for _, m := range main.VolumeMounts {
		if m.Name == executorconfig.InputsVolume {
			got[m.MountPath] = m.SubPath
		}
	}
	if diff := cmp.Diff(map[string]string{"/work/in": "tree", "/data.csv": "file"}, got); diff != "" {
		t.Errorf("main's input mounts (path → subPath) (-want +got):\n%s", diff)
	}
	// The executor mirrors them like main's own volumes, so outputs under them are collected.
	mirrored := map[string]string{}
	for _, m := range executorConfig(t, pod).Mounts {
		mirrored[m.MainPath] = m.ExecutorPath
	}
	if mirrored["/work/in"] != "/pnsflow/volumes/pnsflow-inputs/tree" {
		t.Errorf("executor mounts = %v; want /work/in mirrored", mirrored)
	}
	// Only the loader holds credentials for inputs: the executor stores no outputs here.
	for _, e := range container(t, pod, executorconfig.ExecutorContainer).Env {
		if e.ValueFrom != nil {
			t.Errorf("an executor with no outputs to store has the env %s from %v", e.Name, e.ValueFrom)
		}
	}
}

func TestTheLoaderHasCredentialsButNoTokenAndNoPrivilege(t *testing.T) {
	for name, sr := range map[string]*v1alpha1.StepRun{
		"main's IDs known":   stepRun(withIDs(new(int64(1000)), new(int64(3000)), nil, nil), withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/a", Key: "p/team-a/x/a"})),
		"main's IDs unknown": stepRun(withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/a", Key: "p/team-a/x/a"})),
		"automounted token": stepRun(withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/a", Key: "p/team-a/x/a"}),
			func(sr *v1alpha1.StepRun) { sr.Spec.AutomountServiceAccountToken = new(true) }),
	} {
		pod := mustBuild(t, sr, inputCfg())
		loader := container(t, pod, executorconfig.LoaderContainer)
		refs := map[string]string{}
		for _, e := range loader.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			}
		}
		if diff := cmp.Diff(map[string]string{"AWS_ACCESS_KEY_ID": "creds/accessKey", "AWS_SECRET_ACCESS_KEY": "creds/secretKey"}, refs); diff != "" {
			t.Errorf("%s: the loader's credentials (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff([]corev1.VolumeMount{{Name: executorconfig.InputsVolume, MountPath: executorconfig.InputsDir}}, loader.VolumeMounts); diff != "" {
			t.Errorf("%s: the loader mounts more than the inputs volume (-want +got):\n%s", name, diff)
		}
		for _, e := range container(t, pod, executorconfig.MainContainer).Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil || strings.HasPrefix(e.Name, "AWS_") {
				t.Errorf("%s: main has the credential env %s", name, e.Name)
			}
		}
		sc := loader.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
			!cmp.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: loader security context %+v; want no capability, no escalation, a read-only root", name, sc)
		}
	}
	pod := mustBuild(t, stepRun(withIDs(new(int64(1000)), new(int64(3000)), nil, nil), withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/a", Key: "p/team-a/x/a"})), inputCfg())
	sc := container(t, pod, executorconfig.LoaderContainer).SecurityContext
	if sc.RunAsUser == nil || *sc.RunAsUser != 1000 || sc.RunAsGroup == nil || *sc.RunAsGroup != 3000 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("with main's IDs known the loader runs as them: %+v", sc)
	}
}

func TestInputKeysOutsideTheRunsNamespaceAreRefused(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"p/team-a/prev/out", true},
		{"p/team-a/x", true},
		{"p/team-b/prev/out", false},
		{"team-a/prev/out", false},
		{"p/team-a/", false},
		{"p/team-a", false},
		{"p/team-a/../team-b/x", false},
		{"p/team-a//x", false},
		{"p/team-a/./x", false},
		{"p/team-ab/x", false},
	}
	for _, tt := range tests {
		sr := stepRun(withInputs(v1alpha1.InputArtifact{Name: "in", Path: "/in", Key: tt.key}))
		err := CheckInputKeys(sr, inputRepo)
		if tt.ok != (err == nil) {
			t.Errorf("key %q: CheckInputKeys = %v, want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidStepRun) || !strings.Contains(err.Error(), `"p/team-a/"`)) {
			t.Errorf("key %q: error %v should name the allowed prefix", tt.key, err)
		}
		if _, berr := Build(sr, inputCfg()); (berr == nil) != tt.ok {
			t.Errorf("key %q: Build = %v, want ok=%v", tt.key, berr, tt.ok)
		}
	}
	// Without a key prefix the namespace is the first segment.
	noPrefix := *inputRepo
	noPrefix.KeyPrefix = ""
	if err := CheckInputKeys(stepRun(withInputs(v1alpha1.InputArtifact{Name: "in", Path: "/in", Key: "team-a/prev/out"})), &noPrefix); err != nil {
		t.Errorf("no prefix: %v", err)
	}
}

func TestInputPathsThatCollideAreRefused(t *testing.T) {
	tests := map[string]*v1alpha1.StepRun{
		"a volume's mount path": stepRun(withVolumes(corev1.VolumeMount{Name: "data", MountPath: "/data/"}),
			withInputs(v1alpha1.InputArtifact{Name: "in", Path: "/data", Key: "p/team-a/x/in"})),
		"another input's path": stepRun(withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/in", Key: "p/team-a/x/a"},
			v1alpha1.InputArtifact{Name: "b", Path: "/in/", Key: "p/team-a/x/b"})),
		"under /pnsflow": stepRun(withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/pnsflow/outputs/x", Key: "p/team-a/x/a"})),
		"the root":       stepRun(withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/", Key: "p/team-a/x/a"})),
	}
	for name, sr := range tests {
		if _, err := Build(sr, inputCfg()); !errors.Is(err, ErrInvalidStepRun) {
			t.Errorf("%s: Build error = %v, want ErrInvalidStepRun", name, err)
		}
	}
	if _, err := Build(stepRun(withInputs(v1alpha1.InputArtifact{Name: "a", Path: "/a", Key: "p/team-a/x/a"})), testCfg); !errors.Is(err, ErrInvalidStepRun) {
		t.Errorf("inputs without a repository: Build error = %v, want ErrInvalidStepRun", err)
	}
}
