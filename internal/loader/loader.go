// Package loader places a run's input artifacts before main starts: it runs as the Pod's init
// container (`pns-executor load`), downloads each input from the artifact repository into the
// inputs emptyDir that main mounts, and says why when it cannot, in a termination message the
// controller turns into the run's reason. It holds the repository's credentials but no API
// token: it never talks to the API server.
package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pnsflow/pnsflow/api/v1alpha1"
	"github.com/pnsflow/pnsflow/internal/artifact"
	"github.com/pnsflow/pnsflow/internal/executorconfig"
)

// Repository is what the loader needs of the artifact client.
type Repository interface {
	Stat(ctx context.Context, key string) (artifact.Object, error)
	Download(ctx context.Context, key string, w io.Writer) (size int64, sha256Hex string, err error)
	DownloadAndExtract(ctx context.Context, key, destDir string) (size int64, sha256Hex string, err error)
}

// Failure is why loading stopped, as the run's reason and message.
type Failure = executorconfig.LoaderFailure

// Loaded is one input placed at its destination.
type Loaded struct {
	Name, Key, Archive string
	Size               int64
	SHA256             string
}

// Load places every input at its Dest, in order, and stops at the first that cannot be: a
// missing non-optional object is ArtifactNotFound, anything else ArtifactLoadFailed. An optional
// missing input is skipped (nothing is created at its Dest).
func Load(ctx context.Context, repo Repository, inputs []executorconfig.Input) ([]Loaded, *Failure) {
	var out []Loaded
	for _, in := range inputs {
		l, f := loadOne(ctx, repo, in)
		if f != nil {
			return out, f
		}
		if l != nil {
			out = append(out, *l)
		}
	}
	return out, nil
}

func loadOne(ctx context.Context, repo Repository, in executorconfig.Input) (*Loaded, *Failure) {
	obj, err := repo.Stat(ctx, in.Key)
	switch {
	case errors.Is(err, artifact.ErrNotFound) && in.Optional:
		return nil, nil
	case errors.Is(err, artifact.ErrNotFound):
		return nil, &Failure{Reason: v1alpha1.ReasonArtifactNotFound, Message: fmt.Sprintf("input artifact %q: key %s does not exist", in.Name, in.Key)}
	case err != nil:
		return nil, loadFailed(in, err)
	}
	archive := Archive(in.Archive, obj.Archive)
	var size int64
	var sum string
	if archive == executorconfig.ArchiveTgz {
		if err := os.Mkdir(in.Dest, 0o755); err != nil {
			return nil, loadFailed(in, err)
		}
		size, sum, err = repo.DownloadAndExtract(ctx, in.Key, in.Dest)
	} else {
		size, sum, err = downloadFile(ctx, repo, in)
	}
	if err != nil {
		return nil, loadFailed(in, err)
	}
	return &Loaded{Name: in.Name, Key: in.Key, Archive: archive, Size: size, SHA256: sum}, nil
}

// Archive decides how an input is placed: as the input says, else as the object was stored,
// else as a plain file.
func Archive(declared, stored string) string {
	switch {
	case declared != "":
		return declared
	case stored != "":
		return stored
	}
	return executorconfig.ArchiveNone
}

func downloadFile(ctx context.Context, repo Repository, in executorconfig.Input) (int64, string, error) {
	// O_EXCL: two inputs never share a Dest, so an existing file means something is wrong.
	f, err := os.OpenFile(in.Dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, "", err
	}
	size, sum, err := repo.Download(ctx, in.Key, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return size, sum, err
}

func loadFailed(in executorconfig.Input, err error) *Failure {
	return &Failure{Reason: v1alpha1.ReasonArtifactLoadFailed, Message: fmt.Sprintf("input artifact %q (key %s): %v", in.Name, in.Key, err)}
}
