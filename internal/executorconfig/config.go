// Package executorconfig is the contract between the Pod builder and the PNS executor: the
// names, paths and JSON configuration the builder writes into the Pod and the executor reads.
package executorconfig

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

const (
	// MainContainer and ExecutorContainer are the Pod's two containers.
	MainContainer     = "main"
	ExecutorContainer = "pns-executor"

	// MarkerEnv is set in main's environment so the executor can tell main's process apart
	// (it reads /proc/<pid>/environ); its value is the StepRun's UID.
	MarkerEnv = "PNSFLOW_STEPRUN_UID"
	// OutputsEnv tells main where the always-safe outputs directory is.
	OutputsEnv = "PNSFLOW_OUTPUTS"
	// OutputsVolume is the emptyDir shared by main and the executor.
	OutputsVolume = "pnsflow-outputs"
	// OutputsDir is where OutputsVolume is mounted in both containers.
	OutputsDir = "/pnsflow/outputs"
	// TmpVolume is the emptyDir mounted at main's /tmp when outputs are written there.
	TmpVolume = "pnsflow-tmp"
	// VolumesDir is where the executor mounts each of main's volumes, as VolumesDir/<name>.
	VolumesDir = "/pnsflow/volumes"
	// TokenVolume holds the executor's projected service-account token.
	TokenVolume = "pnsflow-executor-token"
	// TokenDir is where client-go's in-cluster config looks for the token.
	TokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"

	// AccessKeyEnv and SecretKeyEnv carry the repository's credentials into the executor, from
	// the keys SecretAccessKeyKey and SecretSecretKeyKey of the repository's Secret; they are the
	// names the AWS SDK reads.
	AccessKeyEnv       = "AWS_ACCESS_KEY_ID"
	SecretKeyEnv       = "AWS_SECRET_ACCESS_KEY"
	SecretAccessKeyKey = "accessKey"
	SecretSecretKeyKey = "secretKey"

	// ConfigEnv carries Config as JSON into the executor container.
	ConfigEnv = "PNSFLOW_EXECUTOR_CONFIG"
	// ReadyPort is the TCP port the executor listens on, on every address of the Pod, from the
	// moment it watches /proc until its startup probe has connected once; main may use it after.
	ReadyPort = 17771
)

// Config is everything the executor needs to know about its run without asking the API server.
type Config struct {
	// StepRun, Namespace, UID identify the StepRun to report to.
	StepRun   string `json:"stepRun"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	// Pod is the executor's own Pod.
	Pod string `json:"pod"`
	// Outputs are the output parameters to collect.
	Outputs []Output `json:"outputs,omitempty"`
	// Mounts map main's mount paths to the executor's mounts of the same volumes.
	Mounts []Mount `json:"mounts,omitempty"`
	// Stdin is true when the StepRun has spec.stdin; the executor then reads it from the StepRun
	// and writes it to main through the attach API.
	Stdin bool `json:"stdin,omitempty"`
	// Privilege is the Pod builder's decision on the executor's privileges, which the executor
	// records on the StepRun (the ExecutorPrivileged condition) in its first report.
	Privilege Privilege `json:"privilege"`
	// Artifacts are the output artifacts to store, each with its key in Repository.
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Logs, when set, is where main's log is archived while main runs.
	Logs *LogArchive `json:"logs,omitempty"`
	// Repository is where Artifacts and Logs go; set when there are any. Its credentials reach
	// the executor alone, as the env vars AccessKeyEnv and SecretKeyEnv.
	Repository *Repository `json:"repository,omitempty"`
}

// LogArchive says where main's log is stored.
type LogArchive struct {
	// Key is the object's key in the repository's bucket.
	Key string `json:"key"`
}

// Artifact is one output artifact to store.
type Artifact struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Key is the object's key in the repository's bucket.
	Key string `json:"key"`
	// Archive is "none", "tgz" or "" (none for a file, tgz for a directory).
	Archive  string `json:"archive,omitempty"`
	Optional bool   `json:"optional,omitempty"`
}

// Repository is an S3-compatible artifact repository, as described by its ConfigMap.
type Repository struct {
	Endpoint  string `json:"endpoint"`
	Bucket    string `json:"bucket"`
	Region    string `json:"region"`
	Insecure  bool   `json:"insecure,omitempty"`
	PathStyle bool   `json:"pathStyle,omitempty"`
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// SecretName is the Secret, in the run's namespace, holding SecretAccessKeyKey and
	// SecretSecretKeyKey. Only the kubelet reads it.
	SecretName string `json:"secretName"`
	// ArchiveLogs is the default of a run's spec.archiveLogs.
	ArchiveLogs bool `json:"archiveLogs,omitempty"`
}

// Privilege says whether the executor runs as root, and why.
type Privilege struct {
	Privileged bool   `json:"privileged"`
	Reason     string `json:"reason"`
	Message    string `json:"message"`
	// AdoptMainIDs: main's UID or GID is unknown until it runs, so the executor, started as
	// root, looks at main with main's filesystem IDs and then takes main's UID, GID and groups
	// before it opens main's root.
	AdoptMainIDs bool `json:"adoptMainIDs,omitempty"`
}

// Output is one output parameter to collect.
type Output struct {
	Name    string  `json:"name"`
	Path    string  `json:"path"`
	Default *string `json:"default,omitempty"`
}

// Mount says that MainPath in main is ExecutorPath in the executor.
type Mount struct {
	MainPath     string `json:"mainPath"`
	ExecutorPath string `json:"executorPath"`
}

// Encode renders c for ConfigEnv.
func (c Config) Encode() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encoding executor config: %w", err)
	}
	return string(b), nil
}

// Decode parses ConfigEnv's value.
func Decode(s string) (Config, error) {
	var c Config
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return Config{}, fmt.Errorf("decoding executor config: %w", err)
	}
	if c.StepRun == "" || c.Namespace == "" || c.Pod == "" {
		return Config{}, fmt.Errorf("executor config needs stepRun, namespace and pod, got %q", s)
	}
	return c, nil
}

// MainStatus is main's container status in pod, nil when the kubelet has not reported it.
func MainStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == MainContainer {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// ExecutorStatus is the executor's container status in pod, nil when the kubelet has not
// reported it: a native sidecar is listed with the init containers; Pods made by an older
// manager list it with the containers.
func ExecutorStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == ExecutorContainer {
				return &list[i]
			}
		}
	}
	return nil
}
