// Package manifest reads the runs that submit creates and builds the ones resubmit creates:
// decoding a file strictly (a misspelt field is an error, not silently dropped), applying -p
// parameters, and copying a run into a new one.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// AnnotationResubmittedFrom names the run a resubmitted run was copied from.
const AnnotationResubmittedFrom = "workflows.pnsflow.dev/resubmitted-from"

// lastApplied is kubectl's copy of what it applied; a new run is not that object.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Decode reads exactly one WorkflowRun or StepRun from YAML or JSON.
func Decode(r io.Reader) (client.Object, error) {
	docs, err := documents(r)
	if err != nil {
		return nil, err
	}
	switch len(docs) {
	case 0:
		return nil, errors.New("the file holds no object")
	case 1:
	default:
		return nil, fmt.Errorf("the file holds %d objects; submit takes one WorkflowRun or StepRun", len(docs))
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering pnsflow types: %w", err)
	}
	codecs := serializer.NewCodecFactory(scheme, serializer.EnableStrict)
	obj, gvk, err := codecs.UniversalDeserializer().Decode(docs[0], nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	switch o := obj.(type) {
	case *v1alpha1.WorkflowRun:
		return o, nil
	case *v1alpha1.StepRun:
		return o, nil
	}
	return nil, fmt.Errorf("a %s is not a pnsflow run: submit takes a WorkflowRun or a StepRun", gvk.Kind)
}

// documents splits a YAML stream, dropping empty documents (a leading "---", comments only).
func documents(r io.Reader) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading: %w", err)
		}
		if hasContent(doc) {
			docs = append(docs, doc)
		}
	}
}

func hasContent(doc []byte) bool {
	for _, l := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(l)
		if len(t) > 0 && t[0] != '#' && string(t) != "---" {
			return true
		}
	}
	return false
}

// Param is one -p NAME=VALUE.
type Param struct{ Name, Value string }

// ParseParams reads -p values; the value may hold '=' and be empty.
func ParseParams(values []string) ([]Param, error) {
	var out []Param
	for _, v := range values {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("-p %q: want NAME=VALUE", v)
		}
		out = append(out, Param{Name: name, Value: value})
	}
	return out, nil
}

// ApplyParams sets the run's arguments. Only declared arguments can be set: a misspelt name
// would otherwise add an argument nothing reads while the intended one keeps its default.
// A name given twice takes its last value.
func ApplyParams(wfr *v1alpha1.WorkflowRun, params []Param) error {
	if len(params) == 0 {
		return nil
	}
	var declared []v1alpha1.InputParameter
	if wfr.Spec.Arguments != nil {
		declared = wfr.Spec.Arguments.Parameters
	}
	for _, p := range params {
		i := slices.IndexFunc(declared, func(d v1alpha1.InputParameter) bool { return d.Name == p.Name })
		if i < 0 {
			names := make([]string, len(declared))
			for j, d := range declared {
				names[j] = d.Name
			}
			if len(names) == 0 {
				return fmt.Errorf("-p %s: the run declares no arguments (spec.arguments.parameters)", p.Name)
			}
			return fmt.Errorf("-p %s: not an argument of this run; it declares: %s", p.Name, strings.Join(names, ", "))
		}
		declared[i].Value = p.Value
	}
	return nil
}

// SetNamespace puts obj in the namespace of the command line, as kubectl create -f does: a
// namespace in the file wins over the default, and must agree with an explicit -n.
func SetNamespace(obj client.Object, namespace string, explicit bool) error {
	switch ns := obj.GetNamespace(); {
	case ns == "":
		obj.SetNamespace(namespace)
	case explicit && ns != namespace:
		return fmt.Errorf("the namespace in the file (%s) does not match -n %s", ns, namespace)
	}
	return nil
}

// Resubmit is a new WorkflowRun with the same definition and arguments as old, neither
// cancelled nor suspended, under a generated name.
func Resubmit(old *v1alpha1.WorkflowRun) *v1alpha1.WorkflowRun {
	spec := old.Spec.DeepCopy()
	spec.Cancel, spec.Suspend = false, false
	return &v1alpha1.WorkflowRun{ObjectMeta: copiedMeta(old.ObjectMeta), Spec: *spec}
}

// ResubmitStepRun is a new StepRun with old's spec, under a generated name. A StepRun a
// WorkflowRun made becomes a run of its own: no owner, none of the run's labels.
func ResubmitStepRun(old *v1alpha1.StepRun) *v1alpha1.StepRun {
	meta := copiedMeta(old.ObjectMeta)
	for _, l := range []string{v1alpha1.LabelWorkflowRun, v1alpha1.LabelStep, v1alpha1.LabelItem, v1alpha1.LabelAttempt, v1alpha1.LabelStepRun} {
		delete(meta.Labels, l)
	}
	return &v1alpha1.StepRun{ObjectMeta: meta, Spec: *old.Spec.DeepCopy()}
}

func copiedMeta(old metav1.ObjectMeta) metav1.ObjectMeta {
	gen := old.GenerateName
	if gen == "" {
		gen = old.Name + "-"
	}
	annotations := maps.Clone(old.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	delete(annotations, lastApplied)
	annotations[AnnotationResubmittedFrom] = old.Name
	return metav1.ObjectMeta{GenerateName: gen, Namespace: old.Namespace, Labels: maps.Clone(old.Labels), Annotations: annotations}
}
