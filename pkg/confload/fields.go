package confload

import (
	"fmt"
	"reflect"
	"strings"
)

// field is one configurable leaf of a Config struct.
type field struct {
	flag  string        // flag name, e.g. "tls-cert-file"
	env   string        // environment variable, e.g. "AMBIT_XDS_TLS_CERT_FILE"
	key   string        // YAML path, e.g. "tls.certFile"; empty when json:"-" hides it
	usage string        // from the usage tag
	value reflect.Value // the settable struct field
}

// reservedFlags are defined by the loader itself.
var reservedFlags = map[string]bool{"config": true, "help": true, "h": true}

// collectFields walks the struct v and returns its flag-tagged leaves in
// declaration order.
func collectFields(component string, v reflect.Value) ([]field, error) {
	var out []field
	seen := map[string]string{} // flag name -> Go path, to report duplicates
	// keyPrefix is the YAML path so far, or hidden when a json:"-" field on
	// the way makes this part of the struct unreachable from the file.
	var walk func(v reflect.Value, flagPrefix string, keyPrefix yamlPath, goPath string) error
	walk = func(v reflect.Value, flagPrefix string, keyPrefix yamlPath, goPath string) error {
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			tag, tagged := sf.Tag.Lookup("flag")
			if tag == "-" {
				continue
			}
			fv := v.Field(i)
			path := goPath + sf.Name
			key := keyPrefix.child(sf)
			embedded := sf.Anonymous && !tagged && sf.Type.Kind() == reflect.Struct
			if !tagged && !embedded {
				continue
			}
			if embedded {
				if err := walk(fv, flagPrefix, key, path+"."); err != nil {
					return err
				}
				continue
			}
			if !sf.IsExported() {
				return fmt.Errorf("confload: field %s has a flag tag but is not exported", path)
			}
			if tag == "" {
				return fmt.Errorf("confload: field %s has an empty flag tag", path)
			}
			if isNested(sf.Type) {
				if err := walk(fv, flagPrefix+tag+"-", key, path+"."); err != nil {
					return err
				}
				continue
			}
			if err := checkSupported(sf.Type); err != nil {
				return fmt.Errorf("confload: field %s: %w", path, err)
			}
			name := flagPrefix + tag
			if reservedFlags[name] {
				return fmt.Errorf("confload: field %s: flag name %q is reserved", path, name)
			}
			if other, dup := seen[name]; dup {
				return fmt.Errorf("confload: fields %s and %s both use flag %q", other, path, name)
			}
			seen[name] = path
			out = append(out, field{
				flag:  name,
				env:   EnvName(component, name),
				key:   key.String(),
				usage: sf.Tag.Get("usage"),
				value: fv,
			})
		}
		return nil
	}
	if err := walk(v, "", yamlPath{}, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// yamlPath is the dotted YAML key of a field, as the file decoder sees it.
type yamlPath struct {
	parts  []string
	hidden bool // some field on the way is json:"-"
}

// child extends p with the key of sf. An embedded struct without a json
// name adds nothing: its fields are flattened, as in encoding/json.
func (p yamlPath) child(sf reflect.StructField) yamlPath {
	name, ok := jsonName(sf)
	switch {
	case !ok:
		return yamlPath{hidden: true}
	case p.hidden:
		return p
	case name == "" && sf.Anonymous:
		return p
	case name == "":
		name = sf.Name
	}
	return yamlPath{parts: append(p.parts[:len(p.parts):len(p.parts)], name)}
}

func (p yamlPath) String() string {
	if p.hidden {
		return ""
	}
	return strings.Join(p.parts, ".")
}

// jsonName returns the name from the json tag ("" when the tag names none)
// and false when the field is excluded with json:"-".
func jsonName(sf reflect.StructField) (string, bool) {
	tag := sf.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	return name, true
}

// EnvName is the environment variable for a flag of a component:
// AMBIT_<COMPONENT>_<FLAG>, upper case, with '-' and '.' turned into '_'.
func EnvName(component, flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "AMBIT_" + strings.ToUpper(r.Replace(component)) + "_" + strings.ToUpper(r.Replace(flagName))
}
