package confload

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// flagValue records a flag's parsed values without touching the Config, so
// the flags can be applied last, after the file and the environment.
type flagValue struct {
	typ    reflect.Type
	def    string
	parsed []reflect.Value // one per occurrence on the command line
}

func (v *flagValue) Set(s string) error {
	pv, err := parseValue(v.typ, s)
	if err != nil {
		return err
	}
	v.parsed = append(v.parsed, pv)
	return nil
}

// String is the default, as the flag package expects; the nil check covers
// the zero value the flag package creates for its own usage output.
func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return v.def
}

func (v *flagValue) IsBoolFlag() bool { return v != nil && v.typ.Kind() == reflect.Bool }

// apply stores the command-line value into dst. Repeating a list flag
// appends; repeating any other flag keeps the last value.
func (v *flagValue) apply(dst reflect.Value) {
	if len(v.parsed) == 0 {
		return
	}
	if !isStringList(v.typ) {
		dst.Set(v.parsed[len(v.parsed)-1])
		return
	}
	all := reflect.MakeSlice(v.typ, 0, 0)
	for _, p := range v.parsed {
		all = reflect.AppendSlice(all, p)
	}
	dst.Set(all)
}

// printUsage writes --help: every flag with its type, default, variable
// and YAML key, in declaration order, then any extra flags.
func printUsage(w io.Writer, program, component string, fields []field, fs *flag.FlagSet) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s [flags]\n\n", program)
	b.WriteString("Settings come from, lowest to highest precedence: defaults, the YAML file\n")
	b.WriteString("given by --config, environment variables, flags.\n\nFlags:\n")
	known := map[string]bool{}
	fmt.Fprintf(&b, "  --config string\n        YAML config file; unknown keys are errors\n        env %s\n", EnvName(component, "config"))
	known["config"] = true
	for _, f := range fields {
		known[f.flag] = true
		fmt.Fprintf(&b, "  --%s %s\n", f.flag, typeName(f.value.Type()))
		if f.usage != "" {
			fmt.Fprintf(&b, "        %s\n", f.usage)
		}
		if def := formatValue(f.value); def != "" {
			fmt.Fprintf(&b, "        default %q\n", def)
		}
		fmt.Fprintf(&b, "        env %s", f.env)
		if f.key != "" {
			fmt.Fprintf(&b, ", file %s", f.key)
		}
		b.WriteString("\n")
	}
	fs.VisitAll(func(fl *flag.Flag) {
		if known[fl.Name] {
			return
		}
		fmt.Fprintf(&b, "  --%s\n        %s\n", fl.Name, fl.Usage)
	})
	_, _ = io.WriteString(w, b.String())
}
