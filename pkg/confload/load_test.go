package confload_test

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/confload"
)

func TestPrecedence(t *testing.T) {
	file := files{"c.yaml": "listenAddr: file:1\n", "d.yaml": "listenAddr: other:1\n"}
	cases := []struct {
		name string
		args []string
		env  env
		want string
	}{
		{name: "default", want: ":15010"},
		{name: "file over default", args: []string{"--config", "c.yaml"}, want: "file:1"},
		{name: "env over file", args: []string{"--config=c.yaml"}, env: env{"AMBIT_TEST_LISTEN_ADDR": "env:1"}, want: "env:1"},
		{name: "flag over env and file", args: []string{"--config=c.yaml", "--listen-addr=flag:1"}, env: env{"AMBIT_TEST_LISTEN_ADDR": "env:1"}, want: "flag:1"},
		{name: "flag over env", args: []string{"-listen-addr", "flag:1"}, env: env{"AMBIT_TEST_LISTEN_ADDR": "env:1"}, want: "flag:1"},
		{name: "file named by env", env: env{"AMBIT_TEST_CONFIG": "c.yaml"}, want: "file:1"},
		{name: "config flag over config env", args: []string{"--config=d.yaml"}, env: env{"AMBIT_TEST_CONFIG": "c.yaml"}, want: "other:1"},
		{name: "empty env value is a value", env: env{"AMBIT_TEST_LISTEN_ADDR": ""}, want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(tc.args, tc.env, file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.ListenAddr != tc.want {
				t.Errorf("ListenAddr = %q, want %q", cfg.ListenAddr, tc.want)
			}
			// Fields nobody set keep their defaults.
			if cfg.Workers != 4 || cfg.TrustDomain != "cluster.local" {
				t.Errorf("untouched fields changed: %+v", cfg)
			}
		})
	}
}

// Every kind is settable from each source, with the same value syntax.
func TestTypes(t *testing.T) {
	cases := []struct {
		flag, value, yaml string
		get               func(testConfig) any
		want              any
	}{
		{"listen-addr", "h:1", `listenAddr: "h:1"`, func(c testConfig) any { return c.ListenAddr }, "h:1"},
		{"debug", "true", "debug: true", func(c testConfig) any { return c.Debug }, true},
		{"workers", "-7", "workers: -7", func(c testConfig) any { return c.Workers }, -7},
		{"small", "0x10", "small: 16", func(c testConfig) any { return c.Small }, int8(16)},
		{"max-bytes", "1048576", "maxBytes: 1048576", func(c testConfig) any { return c.MaxBytes }, uint64(1 << 20)},
		{"ratio", "0.25", "ratio: 0.25", func(c testConfig) any { return c.Ratio }, 0.25},
		{"timeout", "1m30s", "timeout: 1m30s", func(c testConfig) any { return c.Timeout }, 90 * time.Second},
		{"peers", "x:1, y:2,,", "peers: [x:1, y:2]", func(c testConfig) any { return c.Peers }, []string{"x:1", "y:2"}},
		{"log-level", "debug", "logLevel: debug", func(c testConfig) any { return c.LogLevel }, slog.LevelDebug},
		{"tls-cert-file", "/c.pem", "tls: {certFile: /c.pem}", func(c testConfig) any { return c.TLS.CertFile }, "/c.pem"},
		{"tls-rotation-every", "2h", "tls: {rotation: {every: 2h}}", func(c testConfig) any { return c.TLS.Rotation.Every }, 2 * time.Hour},
		{"trust-domain", "example.org", "trustDomain: example.org", func(c testConfig) any { return c.TrustDomain }, "example.org"},
	}
	for _, tc := range cases {
		envName := confload.EnvName("test", tc.flag)
		sources := []struct {
			name  string
			args  []string
			env   env
			files files
		}{
			{name: "flag", args: []string{"--" + tc.flag + "=" + tc.value}},
			{name: "env", env: env{envName: tc.value}},
			{name: "file", args: []string{"--config=f.yaml"}, files: files{"f.yaml": tc.yaml}},
		}
		for _, src := range sources {
			t.Run(tc.flag+"/"+src.name, func(t *testing.T) {
				cfg, err := load(src.args, src.env, src.files)
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if got := tc.get(cfg); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got %#v, want %#v", got, tc.want)
				}
			})
		}
	}
}

func TestBoolFlagWithoutValue(t *testing.T) {
	cfg, err := load([]string{"--debug"}, nil, nil)
	if err != nil || !cfg.Debug {
		t.Fatalf("Debug = %v, err = %v; want true, nil", cfg.Debug, err)
	}
}

func TestLists(t *testing.T) {
	cases := []struct {
		name string
		args []string
		file string
		want []string
	}{
		{name: "repeated flag appends", args: []string{"--peers=a", "--peers", "b,c"}, want: []string{"a", "b", "c"}},
		{name: "empty flag clears", args: []string{"--peers="}, want: []string{}},
		{name: "file comma string", file: `peers: "a, b"`, want: []string{"a", "b"}},
		{name: "file list", file: "peers:\n- a\n- b\n", want: []string{"a", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config=f.yaml")
			}
			cfg, err := load(args, nil, files{"f.yaml": tc.file})
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Peers) != len(tc.want) || (len(tc.want) > 0 && !reflect.DeepEqual(cfg.Peers, tc.want)) {
				t.Errorf("Peers = %q, want %q", cfg.Peers, tc.want)
			}
		})
	}
}

func TestFileOnlyFields(t *testing.T) {
	cfg, err := load([]string{"--config=f.yaml"}, nil, files{"f.yaml": "routes:\n- name: a\n- name: b\n"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 2 || cfg.Routes[1].Name != "b" {
		t.Errorf("Routes = %+v", cfg.Routes)
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	for _, body := range []string{"", "# nothing\n", "tls:\n"} {
		cfg, err := load([]string{"--config=f.yaml"}, nil, files{"f.yaml": body})
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if !reflect.DeepEqual(cfg.TLS, defaultConfig().TLS) || cfg.ListenAddr != ":15010" {
			t.Errorf("%q changed defaults: %+v", body, cfg)
		}
	}
}

// Every bad input is rejected with an error naming where it came from and
// the offending value or key.
func TestBadInputs(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   env
		file  string
		wants []string
	}{
		{name: "flag int", args: []string{"--workers=many"}, wants: []string{"workers", `"many"`, "not an integer"}},
		{name: "flag out of range", args: []string{"--small=300"}, wants: []string{"small", "300", "out of range"}},
		{name: "flag uint negative", args: []string{"--max-bytes=-1"}, wants: []string{"max-bytes", "-1"}},
		{name: "flag duration", args: []string{"--timeout=10"}, wants: []string{"timeout", `"10"`, "duration"}},
		{name: "flag bool", args: []string{"--debug=maybe"}, wants: []string{"debug", "maybe"}},
		{name: "flag level", args: []string{"--log-level=loud"}, wants: []string{"log-level", "loud"}},
		{name: "unknown flag", args: []string{"--listen=x"}, wants: []string{"listen", "--help"}},
		{name: "positional argument", args: []string{"extra"}, wants: []string{"unexpected", "extra"}},
		{name: "env int", env: env{"AMBIT_TEST_WORKERS": "many"}, wants: []string{"AMBIT_TEST_WORKERS", `"many"`, "not an integer"}},
		{name: "env duration", env: env{"AMBIT_TEST_TLS_ROTATION_EVERY": "soon"}, wants: []string{"AMBIT_TEST_TLS_ROTATION_EVERY", `"soon"`}},
		{name: "env bool", env: env{"AMBIT_TEST_DEBUG": ""}, wants: []string{"AMBIT_TEST_DEBUG", `""`, "bool"}},
		{name: "file unknown key", file: "listenAddr: x\nlistenPort: 1\n", wants: []string{`"listenPort"`, "unknown field"}},
		{name: "file unknown nested key", file: "tls:\n  certFle: x\n", wants: []string{`"tls.certFle"`, "unknown field"}},
		{name: "file unknown key in list", file: "routes:\n- nam: a\n", wants: []string{"routes", `"nam"`}},
		{name: "file key case", file: "listenaddr: x\n", wants: []string{`"listenaddr"`, `did you mean "listenAddr"`}},
		{name: "file hidden field", file: "Internal: x\n", wants: []string{`"Internal"`, "unknown field"}},
		{name: "file type", file: "workers: many\n", wants: []string{"workers", "string", "int"}},
		{name: "file duration number", file: "timeout: 10\n", wants: []string{"timeout", "duration"}},
		{name: "file bad duration", file: "timeout: soon\n", wants: []string{"timeout", `"soon"`}},
		{name: "file not a mapping", file: "- a\n", wants: []string{"mapping"}},
		{name: "file nested not a mapping", file: "tls: 3\n", wants: []string{"tls", "mapping"}},
		{name: "file duplicate key", file: "workers: 1\nworkers: 2\n", wants: []string{"workers"}},
		{name: "file missing", args: []string{"--config=nope.yaml"}, wants: []string{"nope.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config=f.yaml")
			}
			_, err := load(args, tc.env, files{"f.yaml": tc.file})
			if err == nil {
				t.Fatal("Load succeeded, want error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestValidateCalledLast(t *testing.T) {
	cfg := defaultConfig()
	if err := confload.Load("test", &cfg, []string{"--workers=9"}, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.validations != 1 || cfg.Workers != 9 {
		t.Errorf("validations = %d, workers = %d; want 1, 9", cfg.validations, cfg.Workers)
	}

	cfg = defaultConfig()
	cfg.invalid = errors.Join(confload.FieldErr("workers", 0, "must be greater than 0"), errBoom)
	err := confload.Load("test", &cfg, nil, nil)
	var fe *confload.FieldError
	if !errors.As(err, &fe) || fe.Field != "workers" || !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want the wrapped Validate errors", err)
	}
	if !strings.HasPrefix(err.Error(), "invalid config: ") {
		t.Errorf("err = %q, want an invalid config prefix", err)
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	cfg := defaultConfig()
	err := confload.Loader{
		Component:  "xds",
		Args:       []string{"--help"},
		HelpOutput: &out,
		ExtraFlags: func(fs *flag.FlagSet) { fs.Bool("version", false, "print the version and exit") },
	}.Load(&cfg)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if cfg.validations != 0 {
		t.Error("Validate ran for --help")
	}
	for _, want := range []string{
		"Usage: ambit-xds",
		"--listen-addr string\n        gRPC listen address\n        default \":15010\"\n        env AMBIT_XDS_LISTEN_ADDR, file listenAddr\n",
		"--timeout duration",
		`default "5s"`,
		"--peers list",
		`default "a:1,b:2"`,
		"env AMBIT_XDS_TLS_ROTATION_EVERY, file tls.rotation.every",
		"env AMBIT_XDS_TRUST_DOMAIN, file trustDomain",
		"env AMBIT_XDS_CONFIG",
		"--version\n        print the version and exit",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Internal") || strings.Contains(out.String(), "routes") {
		t.Errorf("help lists fields without a flag:\n%s", out.String())
	}
}

func TestExtraFlagsParse(t *testing.T) {
	var version bool
	cfg := defaultConfig()
	err := confload.Loader{
		Component:  "xds",
		Args:       []string{"--version"},
		ExtraFlags: func(fs *flag.FlagSet) { fs.BoolVar(&version, "version", false, "") },
	}.Load(&cfg)
	if err != nil || !version {
		t.Fatalf("version = %v, err = %v", version, err)
	}
}

func TestRealFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xds.yaml")
	if err := os.WriteFile(path, []byte("workers: 12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	if err := confload.Load("test", &cfg, []string{"--config", path}, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 12 {
		t.Errorf("Workers = %d, want 12", cfg.Workers)
	}
}

// Mistakes in a Config type are reported, not silently ignored.
func TestBadConfigTypes(t *testing.T) {
	type unsupported struct {
		M map[string]string `flag:"m"`
	}
	type duplicate struct {
		A string `flag:"a-b"`
		B struct {
			C string `flag:"b"`
		} `flag:"a"`
	}
	type reserved struct {
		C string `flag:"config"`
	}
	type unexported struct {
		//lint:ignore U1000 only reached through reflection
		x string `flag:"x"`
	}
	cases := []struct {
		name string
		cfg  any
		want string
	}{
		{"not a pointer", defaultConfig(), "pointer"},
		{"nil", (*testConfig)(nil), "pointer"},
		{"unsupported type", &unsupported{}, "map[string]string"},
		{"duplicate flag", &duplicate{}, `"a-b"`},
		{"reserved flag", &reserved{}, "reserved"},
		{"unexported", &unexported{}, "not exported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := confload.Load("test", tc.cfg, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	cases := []struct{ component, flag, want string }{
		{"xds", "listen-addr", "AMBIT_XDS_LISTEN_ADDR"},
		{"cni-agent", "tls-cert-file", "AMBIT_CNI_AGENT_TLS_CERT_FILE"},
		{"ca", "config", "AMBIT_CA_CONFIG"},
	}
	for _, tc := range cases {
		if got := confload.EnvName(tc.component, tc.flag); got != tc.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", tc.component, tc.flag, got, tc.want)
		}
	}
}
