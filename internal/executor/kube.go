package executor

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
)

// userAgent names the executor in the API server's logs and audit events.
const userAgent = "pns-executor"

// statusCodecs decode only metav1.Status (API errors): the executor decodes the objects it reads
// with encoding/json, so it needs no typed clientset and no scheme of every API group.
var statusCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(s)
}()

// newRESTClient returns a JSON REST client for one API group version. apiPath is "/api" for the
// core group and "/apis" for the others.
func newRESTClient(cfg *rest.Config, apiPath string, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.APIPath = apiPath
	c.GroupVersion = &gv
	c.ContentType = runtime.ContentTypeJSON
	c.AcceptContentTypes = runtime.ContentTypeJSON
	c.NegotiatedSerializer = statusCodecs.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = userAgent
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("making REST client for %s: %w", gv, err)
	}
	return rc, nil
}

// newCoreClient returns a client for the core v1 API (pods, pods/log, pods/attach).
func newCoreClient(cfg *rest.Config) (*rest.RESTClient, error) {
	return newRESTClient(cfg, "/api", schema.GroupVersion{Version: "v1"})
}

// newStepRunClient returns a client for workflows.pnsflow.dev/v1alpha1.
func newStepRunClient(cfg *rest.Config) (*rest.RESTClient, error) {
	return newRESTClient(cfg, "/apis", v1alpha1.GroupVersion)
}
