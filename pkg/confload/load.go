package confload

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
)

// Validator is implemented by Config structs; Load calls it last.
type Validator interface {
	Validate() error
}

// Loader holds the inputs of one load. Only Component is required.
type Loader struct {
	// Component names the environment variables: AMBIT_<COMPONENT>_*.
	Component string
	// Program is the name shown by --help; default "ambit-<component>".
	Program string
	// Args are the command-line arguments without the program name.
	Args []string
	// LookupEnv reads one environment variable (os.LookupEnv in main);
	// nil means an empty environment.
	LookupEnv func(string) (string, bool)
	// ReadFile reads the --config file; nil means os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// HelpOutput receives --help; nil means os.Stderr.
	HelpOutput io.Writer
	// ExtraFlags registers flags that are not part of the Config (for
	// example --version, handled by the caller) so that they parse and are
	// listed by --help.
	ExtraFlags func(*flag.FlagSet)
}

// Load fills cfg, a pointer to a Config struct holding its defaults, from
// args and the environment given by lookupEnv, then validates it.
//
// It returns flag.ErrHelp after printing usage for --help.
func Load(component string, cfg any, args []string, lookupEnv func(string) (string, bool)) error {
	return Loader{Component: component, Args: args, LookupEnv: lookupEnv}.Load(cfg)
}

// Load fills cfg; see the package documentation for the sources and their
// precedence. Every error names the flag, variable or YAML key at fault.
func (l Loader) Load(cfg any) error {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("confload: cfg must be a non-nil pointer to a struct, not %T", cfg)
	}
	if l.Component == "" {
		return errors.New("confload: Loader.Component is required")
	}
	fields, err := collectFields(l.Component, rv.Elem())
	if err != nil {
		return err
	}

	// Parse flags first (they name the file) but apply them last.
	fs := flag.NewFlagSet(l.program(), flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage printed below
	fs.Usage = func() {}
	configPath := fs.String("config", "", "YAML config file")
	values := make([]*flagValue, len(fields))
	for i, f := range fields {
		values[i] = &flagValue{typ: f.value.Type(), def: formatValue(f.value)}
		fs.Var(values[i], f.flag, f.usage)
	}
	if l.ExtraFlags != nil {
		l.ExtraFlags(fs)
	}
	if err := fs.Parse(l.Args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(l.helpOutput(), l.program(), l.Component, fields, fs)
			return flag.ErrHelp
		}
		return fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	if path := l.filePath(*configPath); path != "" {
		data, err := l.readFile(path)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		if err := applyFile(data, rv.Elem()); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if err := l.applyEnv(fields); err != nil {
		return err
	}
	for i, f := range fields {
		values[i].apply(f.value)
	}

	if v, ok := cfg.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("invalid config: %w", err)
		}
	}
	return nil
}

// applyEnv sets every field whose variable is present, even if empty.
func (l Loader) applyEnv(fields []field) error {
	if l.LookupEnv == nil {
		return nil
	}
	for _, f := range fields {
		s, ok := l.LookupEnv(f.env)
		if !ok {
			continue
		}
		v, err := parseValue(f.value.Type(), s)
		if err != nil {
			return fmt.Errorf("environment variable %s=%q: %w", f.env, s, err)
		}
		f.value.Set(v)
	}
	return nil
}

// filePath is --config, else the component's CONFIG variable.
func (l Loader) filePath(flagValue string) string {
	if flagValue != "" || l.LookupEnv == nil {
		return flagValue
	}
	s, _ := l.LookupEnv(EnvName(l.Component, "config"))
	return s
}

func (l Loader) program() string {
	if l.Program != "" {
		return l.Program
	}
	return "ambit-" + l.Component
}

func (l Loader) helpOutput() io.Writer {
	if l.HelpOutput != nil {
		return l.HelpOutput
	}
	return os.Stderr
}

func (l Loader) readFile(path string) ([]byte, error) {
	if l.ReadFile != nil {
		return l.ReadFile(path)
	}
	return os.ReadFile(path)
}
