// Package confload fills a component's Config struct from, in increasing
// precedence: the defaults already in the struct, an optional YAML file
// (--config), environment variables and command-line flags; then it calls
// the struct's Validate method.
//
// Fields opt in with a flag tag; nested structs with a flag tag prefix
// their children's names:
//
//	type Config struct {
//		ListenAddr string        `flag:"listen-addr" usage:"gRPC listen address" json:"listenAddr"`
//		Timeout    time.Duration `flag:"timeout" usage:"per-call timeout" json:"timeout"`
//		TLS        TLSConfig     `flag:"tls" json:"tls"`
//	}
//	type TLSConfig struct {
//		CertFile string `flag:"cert-file" usage:"certificate PEM" json:"certFile"`
//	}
//
// gives, for component "xds", the flags --listen-addr, --timeout and
// --tls-cert-file, the variables AMBIT_XDS_LISTEN_ADDR, AMBIT_XDS_TIMEOUT
// and AMBIT_XDS_TLS_CERT_FILE, and the YAML keys listenAddr, timeout and
// tls.certFile (the json names, as sigs.k8s.io/yaml uses them). Untagged
// exported fields can still be set from the file, which suits values too
// structured for a flag. Unknown YAML keys are errors, so typos do not
// silently fall back to defaults.
//
// Everything the loader reads is passed in (arguments, an environment
// lookup function): it touches neither os.Args, the process environment
// nor flag.CommandLine, so it is safe in tests and in processes hosting
// several components.
package confload
