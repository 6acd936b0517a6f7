package confload_test

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/ambitmesh/ambit/pkg/confload"
)

// testConfig exercises every supported field kind.
type testConfig struct {
	ListenAddr string        `flag:"listen-addr" usage:"gRPC listen address" json:"listenAddr"`
	Debug      bool          `flag:"debug" usage:"debug mode" json:"debug"`
	Workers    int           `flag:"workers" json:"workers"`
	Small      int8          `flag:"small" json:"small"`
	MaxBytes   uint64        `flag:"max-bytes" json:"maxBytes"`
	Ratio      float64       `flag:"ratio" json:"ratio"`
	Timeout    time.Duration `flag:"timeout" json:"timeout"`
	Peers      []string      `flag:"peers" usage:"peer addresses" json:"peers"`
	LogLevel   slog.Level    `flag:"log-level" json:"logLevel"`
	TLS        tlsConfig     `flag:"tls" json:"tls"`
	common
	Routes   []route `json:"routes"` // file only
	Internal string  `flag:"-" json:"-"`

	validations int   // how often Validate ran
	invalid     error // what Validate returns
}

type tlsConfig struct {
	CertFile string       `flag:"cert-file" usage:"certificate PEM file" json:"certFile"`
	Rotation rotateConfig `flag:"rotation" json:"rotation"`
}

type rotateConfig struct {
	Every time.Duration `flag:"every" json:"every"`
}

// common is embedded: its fields are flattened into flags and YAML keys.
type common struct {
	TrustDomain string `flag:"trust-domain" json:"trustDomain"`
}

type route struct {
	Name string `json:"name"`
}

func defaultConfig() testConfig {
	return testConfig{
		ListenAddr: ":15010",
		Workers:    4,
		Timeout:    5 * time.Second,
		Peers:      []string{"a:1", "b:2"},
		TLS:        tlsConfig{CertFile: "/etc/ambit/tls.crt"},
		common:     common{TrustDomain: "cluster.local"},
	}
}

func (c *testConfig) Validate() error {
	c.validations++
	return c.invalid
}

// env is a fake environment.
type env map[string]string

func (e env) lookup(k string) (string, bool) {
	v, ok := e[k]
	return v, ok
}

// files is a fake file system for --config.
type files map[string]string

func (f files) read(name string) ([]byte, error) {
	s, ok := f[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
	return []byte(s), nil
}

// load runs the loader on a fresh default config with the given inputs.
func load(args []string, e env, f files) (testConfig, error) {
	cfg := defaultConfig()
	err := confload.Loader{
		Component: "test",
		Args:      args,
		LookupEnv: e.lookup,
		ReadFile:  f.read,
	}.Load(&cfg)
	return cfg, err
}

var errBoom = errors.New("boom")
