// Package atomicfile writes files that a crash leaves either absent or
// whole: the agent's sandbox records and the plugin's spooled events are
// read back after a restart, when half a file would be worse than none.
package atomicfile

import (
	"os"
	"path/filepath"
)

// TempPrefix starts the names of files being written; readers skip them
// and may delete leftovers.
const TempPrefix = ".tmp-"

// Write stores data as dir/name: a temporary file in dir is synced and
// renamed over the target. dir must exist.
func Write(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
