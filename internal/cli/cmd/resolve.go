package cmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// Kinds a NAME argument may name.
const (
	kindAny         = ""
	kindStepRun     = "StepRun"
	kindWorkflowRun = "WorkflowRun"
)

// kindPrefixes are the TYPE/ spellings kubectl users type, short names included.
var kindPrefixes = map[string]string{
	"sr": kindStepRun, "steprun": kindStepRun, "stepruns": kindStepRun,
	"steprun.workflows.pnsflow.dev": kindStepRun, "stepruns.workflows.pnsflow.dev": kindStepRun,
	"wfr": kindWorkflowRun, "workflowrun": kindWorkflowRun, "workflowruns": kindWorkflowRun,
	"workflowrun.workflows.pnsflow.dev": kindWorkflowRun, "workflowruns.workflows.pnsflow.dev": kindWorkflowRun,
}

// ParseTarget splits NAME or TYPE/NAME: a bare name may be either kind.
func ParseTarget(arg string) (kind, name string, err error) {
	prefix, rest, found := strings.Cut(arg, "/")
	if !found {
		if arg == "" {
			return "", "", errors.New("a name is required")
		}
		return kindAny, arg, nil
	}
	kind, ok := kindPrefixes[strings.ToLower(prefix)]
	if !ok {
		return "", "", fmt.Errorf("%q: %s is not a pnsflow kind (use sr/NAME or wfr/NAME)", arg, prefix)
	}
	if rest == "" {
		return "", "", fmt.Errorf("%q: a name is required after %s/", arg, prefix)
	}
	return kind, rest, nil
}

// lookup connects and resolves NAME in the namespace of -n or the kubeconfig context: what every
// command that acts on one run does first.
func (a *app) lookup(ctx context.Context, arg string) (client.Object, error) {
	if err := a.connect(); err != nil {
		return nil, err
	}
	ns, _, err := a.namespace()
	if err != nil {
		return nil, err
	}
	return a.resolve(ctx, ns, arg)
}

// resolve reads the run NAME names: a StepRun or a WorkflowRun. A bare name held by both is
// ambiguous and must be written sr/NAME or wfr/NAME.
func (a *app) resolve(ctx context.Context, namespace, arg string, allowed ...string) (client.Object, error) {
	kind, name, err := ParseTarget(arg)
	if err != nil {
		return nil, err
	}
	key := client.ObjectKey{Namespace: namespace, Name: name}
	var found []client.Object
	for _, k := range []string{kindWorkflowRun, kindStepRun} {
		if kind != kindAny && kind != k {
			continue
		}
		obj := newObject(k)
		switch err := a.client.Get(ctx, key, obj); {
		case err == nil:
			found = append(found, obj)
		case apierrors.IsNotFound(err):
		default:
			return nil, fmt.Errorf("reading %s %s: %w", k, name, err)
		}
	}
	switch len(found) {
	case 0:
		what := "StepRun or WorkflowRun"
		if kind != kindAny {
			what = kind
		}
		return nil, fmt.Errorf("no %s named %s in namespace %s", what, name, namespace)
	case 2:
		return nil, fmt.Errorf("both a WorkflowRun and a StepRun are named %s: write wfr/%s or sr/%s", name, name, name)
	}
	obj := found[0]
	if len(allowed) > 0 && !allowedKind(obj, allowed) {
		return nil, fmt.Errorf("%s is a %s; this command takes a %s", name, kindOf(obj), strings.Join(allowed, " or "))
	}
	return obj, nil
}

func newObject(kind string) client.Object {
	if kind == kindStepRun {
		return &v1alpha1.StepRun{}
	}
	return &v1alpha1.WorkflowRun{}
}

func kindOf(obj client.Object) string {
	if _, ok := obj.(*v1alpha1.StepRun); ok {
		return kindStepRun
	}
	return kindWorkflowRun
}

func allowedKind(obj client.Object, allowed []string) bool {
	for _, k := range allowed {
		if kindOf(obj) == k {
			return true
		}
	}
	return false
}
