//go:build !linux

package artifact

import (
	"errors"
	"io"
)

// extractTarGz needs openat2 (Linux 5.6+) to refuse tar-slip race-free; the executor only runs on
// Linux, and this keeps the package compiling elsewhere without an unsafe fallback.
func extractTarGz(io.Reader, string) error {
	return errors.New("extracting archives needs Linux (openat2)")
}
