// Package v1alpha1 holds the workflows.pnsflow.dev/v1alpha1 API: StepRun (one container run,
// one Pod) and the types shared by the controllers and the PNS executor.
// +kubebuilder:object:generate=true
// +groupName=workflows.pnsflow.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every pnsflow kind.
	GroupVersion = schema.GroupVersion{Group: "workflows.pnsflow.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the pnsflow kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the pnsflow kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
