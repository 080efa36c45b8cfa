// Package runspec turns the flags of `kubectl pnsflow run` into a StepRun. Every check that can
// be made here is made here, before anything is sent to the API server, so a mistake costs no
// object and gets a message that names the flag.
package runspec

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// MaxNameLength is the longest StepRun name the API accepts (its Pod's name adds "-pod").
const MaxNameLength = 249

// reservedEnv are set by pnsflow in main; the API refuses them, so refuse them first.
var reservedEnv = map[string]bool{"PNSFLOW_STEPRUN_UID": true, "PNSFLOW_OUTPUTS": true}

// Options are the parsed flags and arguments of `run`.
type Options struct {
	Name      string
	Namespace string
	Image     string
	// Env holds --env values: K=V, or K alone to pass the local value on (as docker run -e K).
	Env []string
	// Outputs holds --output values: PARAM=PATH.
	Outputs []string
	// User is --run-as UID[:GID]; a known UID and GID let the executor run unprivileged.
	User string
	// Timeout is --timeout; it becomes activeDeadlineSeconds, so the cluster enforces it even
	// when the terminal goes away.
	Timeout time.Duration
	// Command is what follows `--`: main's command and its arguments.
	Command []string
	// KeepEntrypoint passes Command as args to the image's own entrypoint instead.
	KeepEntrypoint bool
	// Stdin is the content -i read, nil without -i.
	Stdin *string
	// LookupEnv reads the local environment for --env K; nil means none is visible.
	LookupEnv func(string) (string, bool)
}

// Build returns the StepRun the options describe, or an error naming the offending flag.
func Build(o Options) (*v1alpha1.StepRun, error) {
	if err := ValidateName(o.Name); err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.Image) == "" {
		return nil, errors.New("--image is required")
	}
	env, err := ParseEnv(o.Env, o.LookupEnv)
	if err != nil {
		return nil, err
	}
	outputs, err := ParseOutputs(o.Outputs)
	if err != nil {
		return nil, err
	}
	sc, err := ParseUser(o.User)
	if err != nil {
		return nil, err
	}
	deadline, err := DeadlineSeconds(o.Timeout)
	if err != nil {
		return nil, err
	}
	sr := &v1alpha1.StepRun{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace},
		Spec: v1alpha1.StepRunSpec{
			Image:                 o.Image,
			Env:                   env,
			SecurityContext:       sc,
			ActiveDeadlineSeconds: deadline,
			Stdin:                 o.Stdin,
		},
	}
	switch {
	case len(o.Command) == 0:
	case o.KeepEntrypoint:
		sr.Spec.Args = o.Command
	default:
		sr.Spec.Command = o.Command[:1]
		if len(o.Command) > 1 {
			sr.Spec.Args = o.Command[1:]
		}
	}
	if len(outputs) > 0 {
		sr.Spec.Outputs = &v1alpha1.Outputs{Parameters: outputs}
	}
	return sr, nil
}

// ValidateName checks a StepRun name as the API server will.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("a name is required: kubectl pnsflow run NAME --image IMAGE -- COMMAND")
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("name %q is %d characters; a StepRun name is at most %d", name, len(name), MaxNameLength)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("name %q is not valid: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// ParseEnv turns --env values into environment variables, in order. K=V sets V (which may hold
// '='); a bare K takes the local value, and is an error when K is not set locally.
func ParseEnv(values []string, lookup func(string) (string, bool)) ([]corev1.EnvVar, error) {
	var out []corev1.EnvVar
	seen := map[string]int{}
	for _, kv := range values {
		name, value, hasValue := strings.Cut(kv, "=")
		if errs := validation.IsEnvVarName(name); len(errs) > 0 {
			return nil, fmt.Errorf("--env %q: %q is not a valid variable name: %s", kv, name, strings.Join(errs, "; "))
		}
		if reservedEnv[name] {
			return nil, fmt.Errorf("--env %q: %s is set by pnsflow and cannot be overridden", kv, name)
		}
		if !hasValue {
			v, ok := "", false
			if lookup != nil {
				v, ok = lookup(name)
			}
			if !ok {
				return nil, fmt.Errorf("--env %s: not set in your environment (use %s=VALUE)", name, name)
			}
			value = v
		}
		// A later --env of the same name wins, as in docker run.
		if i, dup := seen[name]; dup {
			out[i].Value = value
			continue
		}
		seen[name] = len(out)
		out = append(out, corev1.EnvVar{Name: name, Value: value})
	}
	return out, nil
}

// ParseOutputs turns --output PARAM=PATH values into output parameters.
func ParseOutputs(values []string) ([]v1alpha1.OutputParameter, error) {
	if len(values) > v1alpha1.MaxOutputParameters {
		return nil, fmt.Errorf("%d --output flags: a StepRun has at most %d output parameters", len(values), v1alpha1.MaxOutputParameters)
	}
	var out []v1alpha1.OutputParameter
	seen := map[string]bool{}
	for _, v := range values {
		name, path, ok := strings.Cut(v, "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("--output %q: want PARAM=PATH, e.g. greeting=/pnsflow/outputs/greeting", v)
		}
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return nil, fmt.Errorf("--output %q: %q is not a valid parameter name (lower-case letters, digits, '-'): %s", v, name, strings.Join(errs, "; "))
		}
		if !strings.HasPrefix(path, "/") || len(path) < 2 {
			return nil, fmt.Errorf("--output %q: the path must be absolute, e.g. /pnsflow/outputs/%s", v, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("--output %q: parameter %q is given twice", v, name)
		}
		seen[name] = true
		out = append(out, v1alpha1.OutputParameter{Name: name, ValueFrom: v1alpha1.OutputValueFrom{Path: path}})
	}
	return out, nil
}

// ParseUser turns --run-as UID[:GID] into main's security context; empty means none.
func ParseUser(s string) (*corev1.SecurityContext, error) {
	if s == "" {
		return nil, nil
	}
	uidS, gidS, hasGID := strings.Cut(s, ":")
	uid, err := strconv.ParseInt(uidS, 10, 64)
	if err != nil || uid < 0 || uid > math.MaxInt32 {
		return nil, fmt.Errorf("--run-as %q: want a numeric UID[:GID], e.g. 1000:1000", s)
	}
	sc := &corev1.SecurityContext{RunAsUser: &uid}
	if hasGID {
		gid, err := strconv.ParseInt(gidS, 10, 64)
		if err != nil || gid < 0 || gid > math.MaxInt32 {
			return nil, fmt.Errorf("--run-as %q: want a numeric UID[:GID], e.g. 1000:1000", s)
		}
		sc.RunAsGroup = &gid
	}
	return sc, nil
}

// DeadlineSeconds rounds --timeout up to whole seconds (activeDeadlineSeconds' unit); zero
// means no deadline.
func DeadlineSeconds(d time.Duration) (*int64, error) {
	switch {
	case d == 0:
		return nil, nil
	case d < 0:
		return nil, fmt.Errorf("--timeout %s: must be positive", d)
	}
	s := int64(math.Ceil(d.Seconds()))
	return &s, nil
}

// ErrStdinTooLarge is returned by ReadStdin for input over the cap.
var ErrStdinTooLarge = errors.New("standard input is too large")

// ReadStdin reads all of r for spec.stdin, refusing more than limit bytes (without reading
// further than one byte past it) and anything that is not UTF-8 text, which a JSON string
// could not carry unchanged.
func ReadStdin(r io.Reader, limit int) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return "", fmt.Errorf("reading standard input: %w", err)
	}
	if len(b) > limit {
		return "", fmt.Errorf("%w: more than %d bytes; spec.stdin holds at most %d (%d KiB): mount larger input from a ConfigMap or volume instead",
			ErrStdinTooLarge, limit, limit, limit/1024)
	}
	if !utf8.Valid(b) {
		return "", errors.New("standard input is not UTF-8 text: spec.stdin is a string, binary input would be altered")
	}
	return string(b), nil
}
