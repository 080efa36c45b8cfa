// Package archive reads what a StepRun's executor stored in its artifact repository (main's
// archived log) for the command line, which runs outside the cluster: it finds the repository
// as the controller does (the run's artifactRepositoryRef, else the manager's default ConfigMap),
// takes the credentials from the Secret the ConfigMap names, and reaches a repository that is a
// cluster Service (name.namespace.svc or a cluster IP) through a port-forward to a Pod behind it,
// any other endpoint directly.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/artifact"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// DefaultRepository is the manager's default repository ConfigMap as config/ installs it.
var DefaultRepository = types.NamespacedName{Namespace: "pnsflow-system", Name: "pnsflow-artifact-repository"}

// Reader downloads artifacts of StepRuns. It keeps one client (and port-forward) per repository
// and credentials Secret until Close. It is safe for concurrent use.
type Reader struct {
	Client client.Reader
	// REST and Clientset reach the API server for port-forwards.
	REST      *rest.Config
	Clientset kubernetes.Interface
	// Default is the manager's default repository ConfigMap, for runs that name none.
	Default types.NamespacedName

	mu      sync.Mutex
	repos   map[types.NamespacedName]executorconfig.Repository
	clients map[repoKey]*artifact.Client
	// routes holds each endpoint's way in (nil: direct), so runs of many namespaces that share
	// a repository share one port-forward.
	routes map[string]artifact.DialFunc
	fwds   []*forward
}

type repoKey struct{ configMap, secret types.NamespacedName }

// RepositoryRef is the ConfigMap sr's repository is described by: its own, else def.
func RepositoryRef(sr *v1alpha1.StepRun, def types.NamespacedName) types.NamespacedName {
	if r := sr.Spec.ArtifactRepositoryRef; r != nil && r.Name != "" {
		return types.NamespacedName{Namespace: sr.Namespace, Name: r.Name}
	}
	return def
}

// Open streams artifact a of sr. Reading fails at the end when what came is not the object the
// executor recorded (size or sha256).
func (r *Reader) Open(ctx context.Context, sr *v1alpha1.StepRun, a v1alpha1.ArtifactStatus) (io.ReadCloser, error) {
	c, err := r.client(ctx, sr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		defer cancel()
		size, sum, err := c.Download(ctx, a.Key, pw)
		if err == nil && (size != a.Size || (a.SHA256 != "" && sum != a.SHA256)) {
			err = fmt.Errorf("%s in the repository is %d bytes, sha256 %s; the run recorded %d bytes, sha256 %s", a.Key, size, sum, a.Size, a.SHA256)
		}
		pw.CloseWithError(err)
	}()
	return &stopReader{PipeReader: pr, stop: cancel}, nil
}

// stopReader ends the download when the reader is closed early.
type stopReader struct {
	*io.PipeReader
	stop context.CancelFunc
}

func (s *stopReader) Close() error {
	s.stop()
	return s.PipeReader.Close()
}

// Close stops every port-forward.
func (r *Reader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.fwds {
		f.close()
	}
	r.fwds, r.repos, r.clients, r.routes = nil, nil, nil, nil
}

// client is the repository client for sr, made on first use.
func (r *Reader) client(ctx context.Context, sr *v1alpha1.StepRun) (*artifact.Client, error) {
	ref := RepositoryRef(sr, r.Default)
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, err := r.repository(ctx, ref)
	if err != nil {
		return nil, err
	}
	key := repoKey{configMap: ref, secret: types.NamespacedName{Namespace: sr.Namespace, Name: repo.SecretName}}
	if c := r.clients[key]; c != nil {
		return c, nil
	}
	creds, err := r.credentials(ctx, key.secret)
	if err != nil {
		return nil, err
	}
	dial, seen := r.routes[repo.Endpoint]
	if !seen {
		if dial, err = r.route(ctx, repo); err != nil {
			return nil, fmt.Errorf("reaching the artifact repository %s: %w", repo.Endpoint, err)
		}
		if r.routes == nil {
			r.routes = map[string]artifact.DialFunc{}
		}
		r.routes[repo.Endpoint] = dial
	}
	var opts []artifact.Option
	if dial != nil {
		opts = append(opts, artifact.WithDial(dial))
	}
	c, err := artifact.NewClient(ctx, artifact.RepositoryOf(repo, creds), opts...)
	if err != nil {
		return nil, err
	}
	if r.clients == nil {
		r.clients = map[repoKey]*artifact.Client{}
	}
	r.clients[key] = c
	return c, nil
}

// repository reads and parses the ConfigMap ref once: the StepRuns of a run share it.
func (r *Reader) repository(ctx context.Context, ref types.NamespacedName) (executorconfig.Repository, error) {
	if repo, ok := r.repos[ref]; ok {
		return repo, nil
	}
	cm := &corev1.ConfigMap{}
	if err := r.Client.Get(ctx, ref, cm); err != nil {
		return executorconfig.Repository{}, fmt.Errorf("reading the artifact repository ConfigMap %s: %w", ref, err)
	}
	repo, err := executorconfig.ParseRepository(cm.Data)
	if err != nil {
		return executorconfig.Repository{}, fmt.Errorf("artifact repository ConfigMap %s: %w", ref, err)
	}
	if r.repos == nil {
		r.repos = map[types.NamespacedName]executorconfig.Repository{}
	}
	r.repos[ref] = repo
	return repo, nil
}

// credentials reads the repository's access key pair from its Secret, as the kubelet gives it to
// the executor.
func (r *Reader) credentials(ctx context.Context, ref types.NamespacedName) (artifact.Credentials, error) {
	s := &corev1.Secret{}
	if err := r.Client.Get(ctx, ref, s); err != nil {
		return artifact.Credentials{}, fmt.Errorf("reading the artifact repository's credentials Secret %s: %w", ref, err)
	}
	c := artifact.Credentials{
		AccessKeyID:     string(s.Data[executorconfig.SecretAccessKeyKey]),
		SecretAccessKey: string(s.Data[executorconfig.SecretSecretKeyKey]),
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return artifact.Credentials{}, fmt.Errorf("the artifact repository's credentials Secret %s lacks %s or %s", ref,
			executorconfig.SecretAccessKeyKey, executorconfig.SecretSecretKeyKey)
	}
	return c, nil
}

// route returns how to reach repo: nil for a direct connection, else a dial through a
// port-forward to a Pod of the cluster Service its endpoint names.
func (r *Reader) route(ctx context.Context, repo executorconfig.Repository) (artifact.DialFunc, error) {
	host, port, err := SplitEndpoint(repo.Endpoint, repo.Insecure)
	if err != nil {
		return nil, err
	}
	ref, ok := ServiceByName(host)
	if !ok && net.ParseIP(host) != nil {
		var services corev1.ServiceList
		// Listing every namespace's Services may be refused; the endpoint is then tried directly.
		if err := r.Client.List(ctx, &services); err == nil {
			ref, ok = ServiceByIP(host, services.Items)
		}
	}
	if !ok {
		return nil, nil
	}
	if r.REST == nil || r.Clientset == nil {
		return nil, errors.New("it is a cluster Service, and no port-forward can be made")
	}
	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, ref, svc); err != nil {
		return nil, fmt.Errorf("reading service %s: %w", ref, err)
	}
	var slices discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &slices, client.InNamespace(ref.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: ref.Name}); err != nil {
		return nil, fmt.Errorf("listing the endpoints of service %s: %w", ref, err)
	}
	b, err := BackendFor(svc, port, slices.Items)
	if err != nil {
		return nil, err
	}
	f, err := startForward(r.REST, r.Clientset, b)
	if err != nil {
		return nil, err
	}
	r.fwds = append(r.fwds, f)
	return f.dial(), nil
}
