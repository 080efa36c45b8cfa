package podspec

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Bits of FuzzBuild's flags argument: which optional parts the fuzzed StepRun has.
const (
	fzStdin = 1 << iota
	fzAutomount
	fzPodLevelIDs
	fzUID
	fzGID
	fzSecondMount
	fzOutputDefault
	fzSubPathExpr
	fzReadOnly
	fzDeadline
	fzAnnotation
	fzWorkflowLabel
	fzMount
	fzOutput
)

// fuzzInput is one fuzzed StepRun's primitives, kept together so the seeds read as data.
type fuzzInput struct {
	name, namespace, uid, image, command, envName, envValue   string
	volume, mountPath, subPath, mountPath2, outName, outPath  string
	runAs, runAsGroup                                         int64
	flags                                                     uint16
	stdin, annotationKey, annotationValue, label, serviceAcct string
	deadline                                                  int64
}

func (in fuzzInput) stepRun() *v1alpha1.StepRun {
	sr := &v1alpha1.StepRun{
		ObjectMeta: metav1.ObjectMeta{Name: in.name, Namespace: in.namespace, UID: types.UID(in.uid)},
		Spec: v1alpha1.StepRunSpec{
			Image:              in.image,
			ServiceAccountName: in.serviceAcct,
		},
	}
	has := func(bit uint16) bool { return in.flags&bit != 0 }
	if in.command != "" {
		sr.Spec.Command = strings.Split(in.command, "\x00")
	}
	if in.envName != "" {
		sr.Spec.Env = []corev1.EnvVar{{Name: in.envName, Value: in.envValue}}
	}
	if has(fzMount) {
		sr.Spec.Volumes = []corev1.Volume{{Name: in.volume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		m := corev1.VolumeMount{Name: in.volume, MountPath: in.mountPath, ReadOnly: has(fzReadOnly)}
		if has(fzSubPathExpr) {
			m.SubPathExpr = in.subPath
		} else {
			m.SubPath = in.subPath
		}
		sr.Spec.VolumeMounts = []corev1.VolumeMount{m}
		if has(fzSecondMount) {
			sr.Spec.VolumeMounts = append(sr.Spec.VolumeMounts, corev1.VolumeMount{Name: in.volume, MountPath: in.mountPath2})
		}
	}
	if has(fzOutput) {
		p := v1alpha1.OutputParameter{Name: in.outName, ValueFrom: v1alpha1.OutputValueFrom{Path: in.outPath}}
		if has(fzOutputDefault) {
			p.Default = new(in.envValue)
		}
		sr.Spec.Outputs = &v1alpha1.Outputs{Parameters: []v1alpha1.OutputParameter{p}}
	}
	var uid, gid *int64
	if has(fzUID) {
		uid = new(in.runAs)
	}
	if has(fzGID) {
		gid = new(in.runAsGroup)
	}
	if uid != nil || gid != nil {
		if has(fzPodLevelIDs) {
			sr.Spec.PodSecurityContext = &corev1.PodSecurityContext{RunAsUser: uid, RunAsGroup: gid}
		} else {
			sr.Spec.SecurityContext = &corev1.SecurityContext{RunAsUser: uid, RunAsGroup: gid}
		}
	}
	if has(fzStdin) {
		sr.Spec.Stdin = new(in.stdin)
	}
	if has(fzAutomount) {
		sr.Spec.AutomountServiceAccountToken = new(true)
	}
	if has(fzDeadline) {
		sr.Spec.ActiveDeadlineSeconds = new(in.deadline)
	}
	if has(fzAnnotation) {
		sr.Annotations = map[string]string{in.annotationKey: in.annotationValue}
	}
	if has(fzWorkflowLabel) {
		sr.Labels = map[string]string{v1alpha1.LabelWorkflowRun: in.label, v1alpha1.LabelStep: in.label}
	}
	return sr
}

// FuzzBuild builds StepRuns from fuzzed names, commands, env, mounts, outputs, IDs, stdin and
// annotations. Build must never panic; it must refuse exactly what collides with pnsflow's own
// names and paths (ErrInvalidStepRun); and for a StepRun whose own parts a Pod could hold, the
// Pod it returns must pass the API server's validation (see validatePod), be deterministic and
// leave the StepRun untouched.
func FuzzBuild(f *testing.F) {
	seeds := []fuzzInput{
		{name: "hello", namespace: "team-a", uid: "uid-1", image: "busybox:1.37"},
		{name: "step.with.dots", namespace: "ns", uid: "u", image: "busybox", command: "sh\x00-c\x00echo hi",
			envName: "A_B", envValue: "1", volume: "data", mountPath: "/data", subPath: "sub/dir", mountPath2: "/data2",
			outName: "out", outPath: "/data/out", runAs: 1000, runAsGroup: 1000,
			flags: fzMount | fzSecondMount | fzOutput | fzOutputDefault | fzUID | fzGID | fzStdin | fzDeadline,
			stdin: "line\n", deadline: 60, serviceAcct: "runner"},
		{name: strings.Repeat("a", MaxStepRunNameLength), namespace: "ns", uid: "u", image: "img", runAs: 0, runAsGroup: 0,
			flags:         fzUID | fzGID | fzPodLevelIDs | fzAnnotation | fzWorkflowLabel,
			annotationKey: "sidecar.istio.io/inject", annotationValue: "false", label: "wf"},
		{name: "reserved", namespace: "ns", uid: "u", image: "img", envName: "PNSFLOW_OUTPUTS"},
		{name: "reserved-vol", namespace: "ns", uid: "u", image: "img", volume: "pnsflow-outputs", mountPath: "/x", flags: fzMount},
		{name: "reserved-path", namespace: "ns", uid: "u", image: "img", volume: "v", mountPath: "//pnsflow/../pnsflow/outputs", flags: fzMount},
		{name: "expr", namespace: "ns", uid: "u", image: "img", volume: "logs", mountPath: "/logs", subPath: "$(POD_NAME)",
			flags: fzMount | fzSubPathExpr | fzReadOnly | fzAutomount},
		{name: "env", namespace: "ns", uid: "u", image: "img", envName: "weird.name-ok", envValue: "$(X)"},
		{name: "kubectl", namespace: "ns", uid: "u", image: "img", flags: fzAnnotation,
			annotationKey: lastAppliedAnnotation, annotationValue: "{}"},
		{name: "root", namespace: "ns", uid: "u", image: "img", runAs: 0, flags: fzUID},
	}
	for _, s := range seeds {
		f.Add(s.name, s.namespace, s.uid, s.image, s.command, s.envName, s.envValue, s.volume, s.mountPath, s.subPath,
			s.mountPath2, s.outName, s.outPath, s.runAs, s.runAsGroup, s.flags, s.stdin, s.annotationKey,
			s.annotationValue, s.label, s.serviceAcct, s.deadline)
	}
	f.Fuzz(func(t *testing.T, name, namespace, uid, image, command, envName, envValue, volume, mountPath, subPath,
		mountPath2, outName, outPath string, runAs, runAsGroup int64, flags uint16, stdin, annotationKey,
		annotationValue, label, serviceAcct string, deadline int64) {
		in := fuzzInput{name, namespace, uid, image, command, envName, envValue, volume, mountPath, subPath,
			mountPath2, outName, outPath, runAs, runAsGroup, flags, stdin, annotationKey, annotationValue, label,
			serviceAcct, deadline}
		sr := in.stepRun()
		if problems := userInvalid(sr); len(problems) > 0 {
			// The API server refuses this StepRun or its Pod anyway: Build only must not panic.
			_, _ = Build(sr, testCfg)
			t.Skip(problems[0])
		}
		before := sr.DeepCopy()
		pod, err := Build(sr, testCfg)
		if reserved := reservedUse(sr); reserved != "" {
			if !errors.Is(err, ErrInvalidStepRun) {
				t.Fatalf("a StepRun using %s: want ErrInvalidStepRun, got Pod %v, err %v", reserved, pod != nil, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Build refused a StepRun the API server admits: %v", err)
		}
		if d := cmp.Diff(before, sr); d != "" {
			t.Fatalf("Build changed the StepRun (-before +after):\n%s", d)
		}
		for _, e := range validatePod(pod) {
			t.Errorf("invalid Pod: %s", e)
		}
		again, err := Build(sr, testCfg)
		if err != nil || !cmp.Equal(pod, again) {
			t.Fatalf("Build is not deterministic (err %v):\n%s", err, cmp.Diff(pod, again))
		}
		if _, err := executorconfig.Decode(executorEnv(pod)); err != nil {
			t.Errorf("the executor's config does not decode: %v", err)
		}
	})
}

func executorEnv(pod *corev1.Pod) string {
	for _, c := range pod.Spec.InitContainers {
		for _, e := range c.Env {
			if e.Name == executorconfig.ConfigEnv {
				return e.Value
			}
		}
	}
	return ""
}

// userInvalid lists why the API server would refuse sr itself (the CRD's schema and CEL rules) or
// the Pod made of sr's own parts, whatever pnsflow added: such StepRuns end Error/InvalidPod by
// design, so the properties below hold only for the others.
func userInvalid(sr *v1alpha1.StepRun) []string {
	var out []string
	add := func(what string, errs []string) {
		if len(errs) > 0 {
			out = append(out, what+": "+strings.Join(errs, "; "))
		}
	}
	add("name", validation.IsDNS1123Subdomain(sr.Name))
	if len(sr.Name) > MaxStepRunNameLength {
		out = append(out, "name longer than the CRD's CEL rule allows")
	}
	add("namespace", validation.IsDNS1123Label(sr.Namespace))
	if sr.UID == "" {
		out = append(out, "no UID")
	}
	add("metadata", errorStrings(apivalidation.ValidateAnnotations(sr.Annotations, field.NewPath("annotations"))))
	for _, v := range sr.Labels {
		add("label", validation.IsValidLabelValue(v))
	}
	s := sr.Spec
	if s.Image == "" || len(s.Image) > 1024 || strings.TrimSpace(s.Image) != s.Image {
		out = append(out, "image")
	}
	for _, e := range s.Env {
		add("env name", validation.IsRelaxedEnvVarName(e.Name))
	}
	mountPaths := sets.New[string]()
	for _, v := range s.Volumes {
		add("volume name", validation.IsDNS1123Label(v.Name))
	}
	for _, m := range s.VolumeMounts {
		if m.MountPath == "" || mountPaths.Has(m.MountPath) {
			out = append(out, "mount path empty or repeated")
		}
		mountPaths.Insert(m.MountPath)
		for _, sub := range []string{m.SubPath, m.SubPathExpr} {
			if path.IsAbs(sub) || slices.Contains(strings.Split(sub, "/"), "..") {
				out = append(out, "subPath not a descending relative path")
			}
		}
	}
	if s.Outputs != nil {
		for _, p := range s.Outputs.Parameters {
			add("output name", validation.IsDNS1123Label(p.Name))
			if len(p.ValueFrom.Path) < 2 || len(p.ValueFrom.Path) > 4096 || !strings.HasPrefix(p.ValueFrom.Path, "/") {
				out = append(out, "output path")
			}
		}
	}
	ids := func(sc *corev1.SecurityContext, psc *corev1.PodSecurityContext) []*int64 {
		var l []*int64
		if sc != nil {
			l = append(l, sc.RunAsUser, sc.RunAsGroup)
		}
		if psc != nil {
			l = append(l, psc.RunAsUser, psc.RunAsGroup)
		}
		return l
	}
	for _, id := range ids(s.SecurityContext, s.PodSecurityContext) {
		if id != nil && (*id < 0 || *id > math.MaxInt32) {
			out = append(out, "runAsUser/runAsGroup out of range")
		}
	}
	// The CRD says minimum 1 only; the Pod's API takes at most MaxInt32 (an InvalidPod).
	if d := s.ActiveDeadlineSeconds; d != nil && (*d < 1 || *d > math.MaxInt32) {
		out = append(out, "activeDeadlineSeconds out of range")
	}
	if s.ServiceAccountName != "" {
		add("serviceAccountName", validation.IsDNS1123Subdomain(s.ServiceAccountName))
	}
	if s.Stdin != nil && len(*s.Stdin) > 65536 {
		out = append(out, "stdin too long")
	}
	return out
}

// reservedUse says which of pnsflow's names or paths sr uses, which Build must refuse ("" for none).
func reservedUse(sr *v1alpha1.StepRun) string {
	for _, e := range sr.Spec.Env {
		if e.Name == executorconfig.MarkerEnv || e.Name == executorconfig.OutputsEnv {
			return "env " + e.Name
		}
	}
	for _, v := range sr.Spec.Volumes {
		if strings.HasPrefix(v.Name, reservedVolumePrefix) {
			return "volume " + v.Name
		}
	}
	for _, m := range sr.Spec.VolumeMounts {
		if p := path.Clean("/" + m.MountPath); p == reservedDir || strings.HasPrefix(p, reservedDir+"/") {
			return "mount path " + m.MountPath
		}
	}
	return ""
}

func errorStrings(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// validatePod checks what the API server's own Pod validation (ValidatePodCreate in
// k8s.io/kubernetes/pkg/apis/core/validation) checks of the fields Build sets. That package is
// not used itself: k8s.io/kubernetes is not meant to be a module dependency (its go.mod pins
// the k8s.io/* staging modules at v0.0.0 through replace directives, which a dependent module
// would have to copy), and it would pull the whole Kubernetes tree into this module for a test.
// So the rules are restated here with apimachinery's validators, and kubelet's runAsNonRoot
// check is added.
func validatePod(pod *corev1.Pod) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	out = append(out, errorStrings(apivalidation.ValidateObjectMeta(&pod.ObjectMeta, true,
		apivalidation.NameIsDNSSubdomain, field.NewPath("metadata")))...)
	out = append(out, errorStrings(apivalidation.ValidateOwnerReferences(pod.OwnerReferences, field.NewPath("ownerReferences")))...)
	for k, v := range pod.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			bad("label key %q: %v", k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			bad("label %s value %q: %v", k, v, errs)
		}
	}
	spec := pod.Spec
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		bad("restartPolicy %q", spec.RestartPolicy)
	}
	if d := spec.ActiveDeadlineSeconds; d != nil && (*d < 1 || *d > math.MaxInt32) {
		bad("activeDeadlineSeconds %d", *d)
	}
	if spec.ServiceAccountName != "" {
		if errs := validation.IsDNS1123Subdomain(spec.ServiceAccountName); len(errs) > 0 {
			bad("serviceAccountName %q: %v", spec.ServiceAccountName, errs)
		}
	}

	volumes := sets.New[string]()
	for _, v := range spec.Volumes {
		if errs := validation.IsDNS1123Label(v.Name); len(errs) > 0 {
			bad("volume name %q: %v", v.Name, errs)
		}
		if volumes.Has(v.Name) {
			bad("volume %q repeated", v.Name)
		}
		volumes.Insert(v.Name)
		if p := v.Projected; p != nil {
			for _, src := range p.Sources {
				if t := src.ServiceAccountToken; t != nil && (t.ExpirationSeconds == nil || *t.ExpirationSeconds < 600 || *t.ExpirationSeconds > 1<<32) {
					bad("token expirationSeconds %v", t.ExpirationSeconds)
				}
			}
		}
	}

	names := sets.New[string]()
	for i, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		isInit := i < len(spec.InitContainers)
		if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
			bad("container name %q: %v", c.Name, errs)
		}
		if names.Has(c.Name) {
			bad("container %q repeated", c.Name)
		}
		names.Insert(c.Name)
		if c.Image == "" || strings.TrimSpace(c.Image) != c.Image {
			bad("container %s: image %q", c.Name, c.Image)
		}
		if c.RestartPolicy != nil && (!isInit || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			bad("container %s: restartPolicy %q", c.Name, *c.RestartPolicy)
		}
		if c.StartupProbe != nil {
			if c.RestartPolicy == nil {
				bad("container %s: a startup probe on an init container that is not a sidecar", c.Name)
			}
			p := c.StartupProbe
			if p.SuccessThreshold != 1 || p.PeriodSeconds < 1 || p.TimeoutSeconds < 1 || p.FailureThreshold < 1 {
				bad("container %s: startup probe %+v", c.Name, p)
			}
		}
		for _, e := range c.Env {
			if errs := validation.IsRelaxedEnvVarName(e.Name); len(errs) > 0 {
				bad("container %s: env %q: %v", c.Name, e.Name, errs)
			}
		}
		mountPaths := sets.New[string]()
		for _, m := range c.VolumeMounts {
			if !volumes.Has(m.Name) {
				bad("container %s: mount of unknown volume %q", c.Name, m.Name)
			}
			if m.MountPath == "" || mountPaths.Has(m.MountPath) {
				bad("container %s: mount path %q empty or repeated", c.Name, m.MountPath)
			}
			mountPaths.Insert(m.MountPath)
			if m.SubPath != "" && m.SubPathExpr != "" {
				bad("container %s: subPath and subPathExpr both set", c.Name)
			}
		}
		if c.StdinOnce && !c.Stdin {
			bad("container %s: stdinOnce without stdin", c.Name)
		}
		if sc := c.SecurityContext; sc != nil {
			for _, id := range []*int64{sc.RunAsUser, sc.RunAsGroup} {
				if id != nil && (*id < 0 || *id > math.MaxInt32) {
					bad("container %s: id %d out of range", c.Name, *id)
				}
			}
			if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				bad("container %s: runAsNonRoot with runAsUser 0 (kubelet refuses to start it)", c.Name)
			}
		}
		for r, limit := range c.Resources.Limits {
			if req, ok := c.Resources.Requests[r]; ok && req.Cmp(limit) > 0 {
				bad("container %s: request %s above its limit", c.Name, r)
			}
		}
	}
	return out
}
