package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ambitmesh/ambit/services/cni/internal/atomicfile"
	"github.com/ambitmesh/ambit/services/cni/internal/cnievent"
)

// Sandbox is a pod sandbox the agent learned about from an ADD. It is
// persisted, so a restarted agent knows every sandbox on its node (and
// which were enrolled) before config answers, and keeps them as they were.
type Sandbox struct {
	ContainerID  string         `json:"containerID"`
	Netns        string         `json:"netns"`
	PodNamespace string         `json:"podNamespace"`
	PodName      string         `json:"podName"`
	PodUID       string         `json:"podUID,omitempty"`
	IPs          []cnievent.IP  `json:"ips,omitempty"`
	AddedAt      time.Time      `json:"addedAt"`
	Enrolled     bool           `json:"enrolled"`
	Workload     *WorkloadIdent `json:"workload,omitempty"`
}

// WorkloadIdent is what ztunnel is told about an enrolled pod.
type WorkloadIdent struct {
	// UID is the pod's metadata.uid (the ZDS uid).
	UID            string `json:"uid"`
	Namespace      string `json:"namespace"`
	Name           string `json:"name"`
	ServiceAccount string `json:"serviceAccount"`
}

// PodKey is namespace/name.
func (s *Sandbox) PodKey() string { return s.PodNamespace + "/" + s.PodName }

func sandboxFromEvent(ev *cnievent.Event) *Sandbox {
	return &Sandbox{
		ContainerID: ev.ContainerID, Netns: ev.Netns,
		PodNamespace: ev.PodNamespace, PodName: ev.PodName, PodUID: ev.PodUID,
		IPs: ev.IPs, AddedAt: ev.At,
	}
}

// sandboxStore keeps one JSON file per sandbox in a per-node directory.
type sandboxStore struct{ dir string }

const sandboxExt = ".sandbox.json"

func (s sandboxStore) path(id string) string { return filepath.Join(s.dir, id+sandboxExt) }

// save writes atomically (temp file, fsync, rename).
func (s sandboxStore) save(sb *Sandbox) error {
	b, err := json.MarshalIndent(sb, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.dir, sb.ContainerID+sandboxExt, b); err != nil {
		return fmt.Errorf("save sandbox %s: %w", sb.ContainerID, err)
	}
	return nil
}

func (s sandboxStore) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	return nil
}

// load returns every stored sandbox; files that cannot be read are
// reported and skipped (then removed by the caller's reconciliation).
func (s sandboxStore) load() (sbs []*Sandbox, bad map[string]error, err error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, nil, err
	}
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, err
	}
	bad = map[string]error{}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, atomicfile.TempPrefix) {
			_ = os.Remove(filepath.Join(s.dir, name))
			continue
		}
		if !strings.HasSuffix(name, sandboxExt) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		var sb Sandbox
		if err == nil {
			err = json.Unmarshal(b, &sb)
		}
		if err == nil && sb.ContainerID+sandboxExt != name {
			err = fmt.Errorf("file holds sandbox %q", sb.ContainerID)
		}
		if err != nil {
			bad[name] = err
			continue
		}
		sbs = append(sbs, &sb)
	}
	return sbs, bad, nil
}
