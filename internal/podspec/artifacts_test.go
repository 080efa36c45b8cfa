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

func TestArtifactKey(t *testing.T) {
	for _, tt := range []struct{ prefix, want string }{
		{"", "team-a/run/out"},
		{"runs", "runs/team-a/run/out"},
		{"a/b", "a/b/team-a/run/out"},
	} {
		if got := ArtifactKey(tt.prefix, "team-a", "run", "out"); got != tt.want {
			t.Errorf("ArtifactKey(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

func withArtifacts(a ...v1alpha1.OutputArtifact) option {
	return func(sr *v1alpha1.StepRun) {
		if sr.Spec.Outputs == nil {
			sr.Spec.Outputs = &v1alpha1.Outputs{}
		}
		sr.Spec.Outputs.Artifacts = append(sr.Spec.Outputs.Artifacts, a...)
	}
}

func TestOutputArtifactsReachTheExecutorWithCredentialsMainNeverSees(t *testing.T) {
	repo := &executorconfig.Repository{Endpoint: "s3:8333", Bucket: "b", Region: "us-east-1", PathStyle: true, KeyPrefix: "p", SecretName: "creds"}
	cfg := testCfg
	cfg.Repository = repo
	sr := stepRun(withArtifacts(
		v1alpha1.OutputArtifact{Name: "dir", Path: "/work/out"},
		v1alpha1.OutputArtifact{Name: "file", Path: "/tmp/f", Archive: "none", Optional: true},
	))
	pod := mustBuild(t, sr, cfg)

	got := executorConfig(t, pod)
	wantArtifacts := []executorconfig.Artifact{
		{Name: "dir", Path: "/work/out", Key: "p/team-a/hello/dir"},
		{Name: "file", Path: "/tmp/f", Key: "p/team-a/hello/file", Archive: "none", Optional: true},
	}
	if diff := cmp.Diff(wantArtifacts, got.Artifacts); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(repo, got.Repository); diff != "" {
		t.Errorf("repository (-want +got):\n%s", diff)
	}

	exec := container(t, pod, executorconfig.ExecutorContainer)
	refs := map[string]string{}
	for _, e := range exec.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	if diff := cmp.Diff(map[string]string{"AWS_ACCESS_KEY_ID": "creds/accessKey", "AWS_SECRET_ACCESS_KEY": "creds/secretKey"}, refs); diff != "" {
		t.Errorf("the executor's credentials (-want +got):\n%s", diff)
	}
	// main: no Secret in its env, envFrom, or any volume it mounts.
	main := container(t, pod, executorconfig.MainContainer)
	for _, e := range main.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil || strings.HasPrefix(e.Name, "AWS_") {
			t.Errorf("main has the credential env %s", e.Name)
		}
	}
	if len(main.EnvFrom) != 0 {
		t.Errorf("main has envFrom %+v", main.EnvFrom)
	}
	secretVolumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil || v.Projected != nil && v.Name != executorconfig.TokenVolume {
			secretVolumes[v.Name] = true
		}
	}
	for _, m := range main.VolumeMounts {
		if secretVolumes[m.Name] {
			t.Errorf("main mounts the secret volume %s", m.Name)
		}
	}
	if got := exec.Resources.Limits[corev1.ResourceMemory]; got.Cmp(artifactMemoryLimit) != 0 {
		t.Errorf("an uploading executor's memory limit = %s, want %s", got.String(), artifactMemoryLimit.String())
	}
	if got := container(t, mustBuild(t, stepRun(), cfg), executorconfig.ExecutorContainer).Resources.Limits[corev1.ResourceMemory]; got.String() != "64Mi" {
		t.Errorf("a run without artifacts: executor memory limit = %s, want the default 64Mi", got.String())
	}
	// /tmp/f is an output under /tmp: the emptyDir applies to artifacts too.
	if !hasVolume(pod, executorconfig.TmpVolume) {
		t.Error("no /tmp emptyDir for an artifact under /tmp")
	}
}

func hasVolume(pod *corev1.Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

func TestNoArtifactsNoRepository(t *testing.T) {
	cfg := testCfg
	cfg.Repository = &executorconfig.Repository{Endpoint: "s3:8333", Bucket: "b", SecretName: "creds"}
	pod := mustBuild(t, stepRun(), cfg)
	got := executorConfig(t, pod)
	if got.Repository != nil || len(got.Artifacts) != 0 {
		t.Errorf("a run without artifacts got a repository: %+v", got)
	}
	for _, e := range container(t, pod, executorconfig.ExecutorContainer).Env {
		if e.Name != executorconfig.ConfigEnv {
			t.Errorf("a run without artifacts gives the executor env %s", e.Name)
		}
	}
	if _, err := Build(stepRun(withArtifacts(v1alpha1.OutputArtifact{Name: "a", Path: "/a"})), testCfg); !errors.Is(err, ErrInvalidStepRun) {
		t.Errorf("artifacts without a repository: Build error = %v, want ErrInvalidStepRun", err)
	}
}

func TestMainsLogIsArchivedWhenTheRunOrItsRepositorySaysSo(t *testing.T) {
	on := &executorconfig.Repository{Endpoint: "s3:8333", Bucket: "b", KeyPrefix: "p", SecretName: "creds", ArchiveLogs: true}
	off := &executorconfig.Repository{Endpoint: "s3:8333", Bucket: "b", KeyPrefix: "p", SecretName: "creds"}
	archive := func(b bool) option { return func(sr *v1alpha1.StepRun) { sr.Spec.ArchiveLogs = &b } }
	tests := []struct {
		name string
		sr   *v1alpha1.StepRun
		repo *executorconfig.Repository
		want bool
	}{
		{"repository default on", stepRun(), on, true},
		{"repository default off", stepRun(), off, false},
		{"no repository", stepRun(), nil, false},
		{"the run says no", stepRun(archive(false)), on, false},
		{"the run says yes", stepRun(archive(true)), off, true},
	}
	for _, tt := range tests {
		cfg := testCfg
		cfg.Repository = tt.repo
		pod := mustBuild(t, tt.sr, cfg)
		got := executorConfig(t, pod)
		if (got.Logs != nil) != tt.want {
			t.Errorf("%s: logs = %+v, want archived=%v", tt.name, got.Logs, tt.want)
			continue
		}
		if !tt.want {
			continue
		}
		if got.Logs.Key != "p/team-a/hello/main-logs" || got.Repository == nil {
			t.Errorf("%s: logs %+v, repository %+v", tt.name, got.Logs, got.Repository)
		}
		exec := container(t, pod, executorconfig.ExecutorContainer)
		if len(exec.Env) != 3 {
			t.Errorf("%s: an archiving executor needs the repository's credentials; env %v", tt.name, exec.Env)
		}
	}
	if !UsesArtifacts(&stepRun(archive(true)).Spec) || UsesArtifacts(&stepRun(archive(false)).Spec) {
		t.Error("only an explicit archiveLogs: true needs a repository")
	}
	if _, err := Build(stepRun(archive(true)), testCfg); !errors.Is(err, ErrInvalidStepRun) {
		t.Errorf("archiveLogs without a repository: Build error = %v, want ErrInvalidStepRun", err)
	}
}
