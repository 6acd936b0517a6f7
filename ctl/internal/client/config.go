// Package client holds ambitctl's connection settings — a kubeconfig-like
// file of named contexts with the control-plane addresses and the admin
// credentials — and dials the control-plane services with them.
package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// File is the ambitctl config file (default ~/.ambit/config, or $AMBITCONFIG).
//
//	currentContext: local
//	contexts:
//	- name: local
//	  trustDomain: cluster.local
//	  configServers: [127.0.0.1:15030]
//	  caServers: [127.0.0.1:15012]
//	  certFile: admin.crt      # admin identity spiffe://<td>/ambit/admin
//	  keyFile: admin.key
//	  bundleFile: bundle.pem
//	  insecureLoopback: false  # development: plaintext to loopback servers
type File struct {
	CurrentContext string    `json:"currentContext"`
	Contexts       []Context `json:"contexts"`
}

// Context is one mesh ambitctl can talk to.
type Context struct {
	Name          string   `json:"name"`
	TrustDomain   string   `json:"trustDomain,omitempty"`
	ConfigServers []string `json:"configServers,omitempty"`
	CAServers     []string `json:"caServers,omitempty"`
	XDSServers    []string `json:"xdsServers,omitempty"`
	NATSURL       string   `json:"natsURL,omitempty"`
	CertFile      string   `json:"certFile,omitempty"`
	KeyFile       string   `json:"keyFile,omitempty"`
	BundleFile    string   `json:"bundleFile,omitempty"`
	// InsecureLoopback speaks plaintext to servers started with
	// --insecure-loopback; only loopback addresses are allowed.
	InsecureLoopback bool `json:"insecureLoopback,omitempty"`
}

// DefaultPath is where the config file lives unless told otherwise.
func DefaultPath(getenv func(string) string) string {
	if p := getenv("AMBITCONFIG"); p != "" {
		return p
	}
	home := getenv("HOME")
	if home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".ambit", "config")
}

// Load reads the file; a missing file yields an empty File.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Relative credential paths are relative to the file.
	dir := filepath.Dir(path)
	for i := range f.Contexts {
		c := &f.Contexts[i]
		for _, p := range []*string{&c.CertFile, &c.KeyFile, &c.BundleFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
	return &f, nil
}

// Save writes the file (creating its directory), replacing the context of
// the same name and making it current.
func Save(path string, c Context) error {
	f, err := Load(path)
	if err != nil {
		return err
	}
	replaced := false
	for i := range f.Contexts {
		if f.Contexts[i].Name == c.Name {
			f.Contexts[i], replaced = c, true
		}
	}
	if !replaced {
		f.Contexts = append(f.Contexts, c)
	}
	f.CurrentContext = c.Name
	data, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// Context returns the named context, or the current one for "".
func (f *File) Context(name string) (Context, error) {
	if name == "" {
		name = f.CurrentContext
	}
	for _, c := range f.Contexts {
		if c.Name == name {
			return c, nil
		}
	}
	if name == "" {
		return Context{}, errors.New("no context configured: run `ambitctl up` or pass --server")
	}
	return Context{}, fmt.Errorf("context %q not found in the config file", name)
}
