package artifact

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// writeTarGz writes the tree at dir to w as tar+gzip: directories, regular files (content, size,
// permission bits, mtime to the second) and symlinks stored as symlinks (never followed, so a link
// to /etc stores the link, not /etc). Entries come in lexical walk order with no owner names, so
// the same tree always gives the same bytes. Any other file type (socket, device, FIFO) is an
// error naming it, rather than a silently incomplete artifact. Hard links are stored as separate
// copies.
func writeTarGz(w io.Writer, dir string) error {
	// os.Root confines every open below dir, even if the tree changes while it is archived (a
	// directory swapped for a symlink cannot make us read outside it).
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	// BestSpeed: the executor shares the node's CPU with main; level 1 costs a fraction of the
	// default's time and loses little on typical outputs (logs, JSON, already-compressed blobs).
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	fsys := root.FS()
	err = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		return addEntry(tw, fsys, name, d)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addEntry(tw *tar.Writer, fsys fs.FS, name string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()}
	switch t := info.Mode().Type(); {
	case t == fs.ModeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
	case t == fs.ModeSymlink:
		target, err := fs.ReadLink(fsys, name)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case t.IsRegular():
		hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
	default:
		return fmt.Errorf("%s: unsupported file type %s (only files, directories and symlinks are archived)", name, t)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	// A file that grows or shrinks while archived fails here (tar's size is fixed in the header)
	// instead of producing an archive that does not match its own headers.
	if n, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	} else if n != hdr.Size {
		return fmt.Errorf("%s: changed size while archived (%d bytes, header says %d)", name, n, hdr.Size)
	}
	return nil
}
