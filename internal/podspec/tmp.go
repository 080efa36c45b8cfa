package podspec

import (
	"path"
	"slices"
	"strings"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// tmpDir is where most users write outputs, as they do in Argo Workflows.
const tmpDir = "/tmp"

// needsTmpVolume: an output lies under /tmp, on no volume of main's, and main mounts nothing at
// /tmp. An emptyDir there outlives main's mount namespace, so such outputs are collected even
// when main exits before the executor holds its root (a fast step's usual fate).
func needsTmpVolume(spec *v1alpha1.StepRunSpec) bool {
	if spec.Outputs == nil || spec.Outputs.KeepImageTmp {
		return false
	}
	mounts := make([]string, 0, len(spec.VolumeMounts))
	for _, m := range spec.VolumeMounts {
		p := path.Clean("/" + m.MountPath)
		if p == tmpDir {
			return false
		}
		mounts = append(mounts, p)
	}
	var paths []string
	for _, p := range spec.Outputs.Parameters {
		paths = append(paths, p.ValueFrom.Path)
	}
	for _, a := range spec.Outputs.Artifacts {
		paths = append(paths, a.Path)
	}
	for _, p := range paths {
		p = path.Clean("/" + p)
		if within(p, tmpDir) && !slices.ContainsFunc(mounts, func(m string) bool { return within(p, m) }) {
			return true
		}
	}
	return false
}

// within reports whether the clean path p is dir or lies under it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}
