package executorconfig

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

const (
	// LoaderContainer is the init container that loads input artifacts before main starts. The
	// Pod has it only when the run has inputs.
	LoaderContainer = "load-artifacts"
	// LoaderConfigEnv carries LoaderConfig as JSON into the loader.
	LoaderConfigEnv = "PNSFLOW_LOADER_CONFIG"
	// InputsVolume is the emptyDir the loader writes input artifacts into; main mounts each
	// artifact from it (subPath) at the artifact's path.
	InputsVolume = "pnsflow-inputs"
	// InputsDir is where the loader mounts InputsVolume; artifact <name> goes to InputsDir/<name>.
	InputsDir = "/pnsflow/inputs"

	// ArchiveNone and ArchiveTgz are how an artifact is stored.
	ArchiveNone = "none"
	ArchiveTgz  = "tgz"
)

// LoaderConfig is everything the loader needs: where the repository is and what to load where.
// Its credentials reach it as the env vars AccessKeyEnv and SecretKeyEnv.
type LoaderConfig struct {
	Repository Repository `json:"repository"`
	Inputs     []Input    `json:"inputs"`
}

// Input is one input artifact to load.
type Input struct {
	Name string `json:"name"`
	// Key is the object's key in the repository's bucket.
	Key string `json:"key"`
	// Dest is where the loader writes it: a file, or a directory a tgz archive is extracted into.
	Dest string `json:"dest"`
	// Archive is "none", "tgz" or "" (as recorded with the object, else none).
	Archive  string `json:"archive,omitempty"`
	Optional bool   `json:"optional,omitempty"`
}

// Encode renders c for LoaderConfigEnv.
func (c LoaderConfig) Encode() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encoding loader config: %w", err)
	}
	return string(b), nil
}

// DecodeLoader parses LoaderConfigEnv's value.
func DecodeLoader(s string) (LoaderConfig, error) {
	var c LoaderConfig
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return LoaderConfig{}, fmt.Errorf("decoding loader config: %w", err)
	}
	if c.Repository.Endpoint == "" || c.Repository.Bucket == "" {
		return LoaderConfig{}, fmt.Errorf("loader config needs a repository endpoint and bucket, got %q", s)
	}
	for _, in := range c.Inputs {
		if in.Key == "" || in.Dest == "" {
			return LoaderConfig{}, fmt.Errorf("loader config: input %q needs a key and a dest", in.Name)
		}
	}
	return c, nil
}

// LoaderFailure is why the loader stopped: the run's reason and message. The loader writes it as
// its termination message, which the controller reads from the Pod's status.
type LoaderFailure struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (f *LoaderFailure) Error() string { return f.Reason + ": " + f.Message }

// maxTerminationMessage is what kubelet keeps of a termination message.
const maxTerminationMessage = 4096

// Encode renders f as a termination message: JSON within kubelet's limit, the message cut short
// when it must be.
func (f LoaderFailure) Encode() string {
	for {
		b, _ := json.Marshal(f)
		if len(b) <= maxTerminationMessage || f.Message == "" {
			return string(b)
		}
		// JSON escaping may grow the message several-fold: cut it in proportion and look again.
		f.Message = f.Message[:max(0, len(f.Message)*maxTerminationMessage/len(b)-1)]
		for len(f.Message) > 0 && !utf8.ValidString(f.Message) {
			f.Message = f.Message[:len(f.Message)-1]
		}
	}
}

// DecodeLoaderFailure reads a loader's termination message; ok is false when it is not one (the
// loader crashed, or was killed, before writing it).
func DecodeLoaderFailure(msg string) (LoaderFailure, bool) {
	var f LoaderFailure
	if err := json.Unmarshal([]byte(msg), &f); err != nil || f.Reason == "" {
		return LoaderFailure{}, false
	}
	return f, true
}
