// Package cmd is kubectl-pnsflow's command line: one file per command, each a thin layer that
// parses flags, talks to the API server and hands every decision to a pure package (runspec,
// manifest, runview, tree, podlogs, exitcode, term).
package cmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/cli/archive"
	"github.com/pnsflow/pnsflow/internal/cli/podlogs"
	"github.com/pnsflow/pnsflow/internal/cli/term"
)

// Client-side request limits. client-go's default (5 per second) would make `logs` of a
// 5000-item fan-out take 17 minutes; the API server's priority and fairness protects it.
const (
	clientQPS   = 100
	clientBurst = 200
)

// Options are what the process gives the commands; tests replace them.
type Options struct {
	In          io.Reader
	Out, ErrOut io.Writer
	// Now is the clock of elapsed times; nil means time.Now.
	Now func() time.Time
	// Logs reads Pod logs; nil means the Pod log API of the cluster the flags select.
	Logs podlogs.Source
	// Archive reads archived logs; nil means each run's artifact repository, found and reached
	// as internal/cli/archive does.
	Archive podlogs.Archive
	// Interrupts delivers Ctrl-C; nil means the process's SIGINT and SIGTERM.
	Interrupts <-chan os.Signal
	// Confirm asks the user a yes/no question; nil means asking on the terminal (/dev/tty),
	// and no terminal means no.
	Confirm func(question string) (bool, error)
	// LookupEnv reads the local environment for run --env K; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// OutMode and ErrMode override what term.Detect finds (tests).
	OutMode, ErrMode *term.Mode
	// Size is the terminal's size for stdout; nil means asking the terminal (tests set it).
	Size func() (width, height int)
}

// app holds the flags every command shares and the clients made from them.
type app struct {
	Options
	flags  *genericclioptions.ConfigFlags
	scheme *runtime.Scheme
	client client.WithWatch
	logs   podlogs.Source
	// archive reads archived logs; repos is it when it is the cluster's (closed by the command),
	// and defaultRepo the manager's default repository ConfigMap it falls back on.
	archive     podlogs.Archive
	repos       *archive.Reader
	defaultRepo string
}

// NewCommand is `kubectl pnsflow` with every subcommand.
func NewCommand(o Options) *cobra.Command {
	if o.In == nil {
		o.In = os.Stdin
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.ErrOut == nil {
		o.ErrOut = os.Stderr
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Size == nil {
		out := o.Out
		o.Size = func() (int, int) { return term.Size(out) }
	}
	a := &app{Options: o, flags: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-pnsflow",
		Short: "Run, watch and follow pnsflow StepRuns and WorkflowRuns",
		Long: `kubectl pnsflow runs a container as a StepRun and follows it like docker run, submits
WorkflowRuns and shows them as a live tree, and reads the logs of their steps.

Exit codes are listed in docs/cli.md: run exits with main's exit code; watch and
submit --watch with 0 (Succeeded), 2 (Failed), 3 (Error) or 4 (Cancelled).`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl pnsflow"},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	a.flags.AddFlags(root.PersistentFlags())
	root.SetIn(o.In)
	root.SetOut(o.Out)
	root.SetErr(o.ErrOut)
	root.AddCommand(a.runCommand(), a.submitCommand(), a.watchCommand(), a.getCommand(), a.logsCommand(),
		a.cancelCommand(), a.suspendCommand(), a.resumeCommand(), a.resubmitCommand())
	return root
}

// Scheme knows the core types and pnsflow's.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("registering core types: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("registering pnsflow types: %w", err)
	}
	return s, nil
}

// connect makes the clients once, from --kubeconfig, --context and the rest.
func (a *app) connect() error {
	if a.client != nil {
		return nil
	}
	cfg, err := a.flags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	if a.scheme, err = Scheme(); err != nil {
		return err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: a.scheme})
	if err != nil {
		return fmt.Errorf("connecting to the cluster: %w", err)
	}
	a.client = c
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("connecting to the cluster: %w", err)
	}
	a.logs = a.Options.Logs
	if a.logs == nil {
		a.logs = podlogs.Kube{Client: cs}
	}
	a.archive = a.Options.Archive
	if a.archive == nil {
		def := archive.DefaultRepository
		if a.defaultRepo != "" {
			ns, name, ok := strings.Cut(a.defaultRepo, "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				return fmt.Errorf("--artifact-repository %q: want NAMESPACE/NAME", a.defaultRepo)
			}
			def = types.NamespacedName{Namespace: ns, Name: name}
		}
		a.repos = &archive.Reader{Client: c, REST: cfg, Clientset: cs, Default: def}
		a.archive = a.repos
	}
	return nil
}

// disconnect ends what connect started that outlives a request (port-forwards).
func (a *app) disconnect() {
	if a.repos != nil {
		a.repos.Close()
	}
}

// namespace is -n, else the kubeconfig context's; explicit says whether -n was given.
func (a *app) namespace() (ns string, explicit bool, err error) {
	ns, explicit, err = a.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", false, fmt.Errorf("finding the namespace: %w", err)
	}
	return ns, explicit, nil
}

// outMode is how stdout looks; errMode stderr.
func (a *app) outMode() term.Mode {
	if a.OutMode != nil {
		return *a.OutMode
	}
	return term.Detect(a.Out)
}

func (a *app) errMode() term.Mode {
	if a.ErrMode != nil {
		return *a.ErrMode
	}
	return term.Detect(a.ErrOut)
}

// notef writes a note for the user on stderr.
func (a *app) notef(format string, args ...any) {
	fmt.Fprintf(a.ErrOut, format+"\n", args...)
}
