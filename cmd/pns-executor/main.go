// Command pns-executor is the PNS executor sidecar. It parses flags, builds the executor and maps
// its errors to exit codes; everything else is in internal/executor.
//
//	pns-executor run [--proc=/proc] [--grace=15s] [-v=0]   watch main and report (the container's command)
//	pns-executor load [--termination-log=PATH]             load input artifacts (the init container)
//	pns-executor version
//
// Exit codes: 0 done (reported, or the StepRun was already terminal), 1 failed, 2 usage,
// 3 stopped before main's exit code was known (nothing reported; the controller decides).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/artifact"
	"github.com/pnsflow/pnsflow/internal/executor"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
	"github.com/pnsflow/pnsflow/internal/loader"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

const (
	exitOK         = 0
	exitFailed     = 1
	exitUsage      = 2
	exitNoExitCode = 3
)

func main() {
	// A GOMEMLIMIT set in the Pod wins; otherwise the collector keeps the heap well inside the
	// container's memory limit while artifacts stream through it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(artifact.SoftMemoryLimit)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: pns-executor run|load|version [flags]")
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runExecutor(args[1:], stderr)
	case "load":
		return load(args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return exitOK
	default:
		fmt.Fprintf(stderr, "pns-executor: unknown command %q; want run, load or version\n", args[0])
		return exitUsage
	}
}

func runExecutor(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	procRoot := fs.String("proc", executor.DefaultProcRoot, "proc filesystem to look for main in")
	grace := fs.Duration("grace", executor.DefaultGrace, "how long to go on after SIGTERM to report main's exit")
	verbosity := fs.Int("v", 0, "log verbosity")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	// Caught from the start: the kubelet stops a restarted executor as soon as main ends, which
	// may be while it is still starting, and it must still report main's exit.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := executor.NewLogger(stderr, *verbosity)
	klog.SetLogger(log)
	if err := executor.HideFromMain(); err != nil {
		log.Error(err, "Hiding the executor's token from main")
		return exitFailed
	}

	cfg, err := executorconfig.Decode(os.Getenv(executorconfig.ConfigEnv))
	if err != nil {
		log.Error(err, "Reading the executor config", "env", executorconfig.ConfigEnv)
		return exitFailed
	}
	restCfg, err := rest.InClusterConfig()
	if err != nil {
		log.Error(err, "Reading the in-cluster API config")
		return exitFailed
	}
	log = log.WithValues("stepRun", cfg.Namespace+"/"+cfg.StepRun, "pod", cfg.Pod)
	e, err := executor.New(executor.Options{
		Config: cfg, REST: restCfg, ProcRoot: *procRoot, Grace: *grace, Log: log,
	})
	if err != nil {
		log.Error(err, "Building the executor")
		return exitFailed
	}

	err = e.Run(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, executor.ErrNoExitCode):
		log.Info("Stopped without a terminal report", "detail", err.Error())
		return exitNoExitCode
	default:
		log.Error(err, "Executor failed")
		return exitFailed
	}
}

func load(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	terminationLog := fs.String("termination-log", "/dev/termination-log", "where to write why loading failed, for the controller")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	log := executor.NewLogger(stderr, 0)
	fail := func(f *loader.Failure) int {
		log.Info("Loading input artifacts failed", "reason", f.Reason, "message", f.Message)
		if err := os.WriteFile(*terminationLog, []byte(f.Encode()), 0o644); err != nil {
			log.Error(err, "Writing the termination message", "path", *terminationLog)
		}
		return exitFailed
	}
	cfg, err := executorconfig.DecodeLoader(os.Getenv(executorconfig.LoaderConfigEnv))
	if err != nil {
		return fail(&loader.Failure{Reason: v1alpha1.ReasonArtifactLoadFailed, Message: err.Error()})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	repo, err := artifact.ClientFromEnv(ctx, cfg.Repository)
	if err != nil {
		return fail(&loader.Failure{Reason: v1alpha1.ReasonArtifactLoadFailed, Message: err.Error()})
	}
	loaded, f := loader.Load(ctx, repo, cfg.Inputs)
	for _, l := range loaded {
		log.Info("Loaded input artifact", "name", l.Name, "key", l.Key, "archive", l.Archive, "size", l.Size, "sha256", l.SHA256)
	}
	if f != nil {
		return fail(f)
	}
	return exitOK
}
