package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"github.com/ambitmesh/ambit/ctl/internal/manifest"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
)

func usageErrorf(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// describeErr renders a gRPC error with its field violations, one per line.
func describeErr(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 1 {
			var lines []string
			for _, v := range br.FieldViolations {
				lines = append(lines, "  - "+v.Description)
			}
			msg = fmt.Sprintf("%d invalid fields (%s):\n%s", len(br.FieldViolations), st.Code(), strings.Join(lines, "\n"))
		}
	}
	return msg
}

func newApplyCmd(g *globals, stdin io.Reader) *cobra.Command {
	var files []string
	var recursive, dryRun bool
	var namespace string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update configuration from YAML or JSON manifests",
		Long: "Applies every object of the manifests in order, one request each, and prints\n" +
			"`kind/name created|configured|unchanged`. Objects that fail are reported on\n" +
			"stderr and the others still apply; the exit code is 1 if any failed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageErrorf("-f is required")
			}
			docs, err := manifest.Read(files, recursive, stdin)
			if err != nil {
				return err
			}
			if len(docs) == 0 {
				return errors.New("no objects found in the manifests")
			}
			cl, conn, err := g.configClient(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			failed := 0
			suffix := ""
			if dryRun {
				suffix = " (dry run)"
			}
			for _, d := range docs {
				ctx, cancel := contextWithTimeout(cmd, g)
				resp, err := cl.Apply(ctx, &configv1.ApplyRequest{Manifest: d.JSON, DryRun: dryRun, DefaultNamespace: namespace})
				cancel()
				ref := manifest.Ref(d.APIVersion, d.Kind, d.Name)
				if err != nil {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "error: %s %s: %s\n", d.Source, ref, describeErr(err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s%s\n", ref, resultWord(resp.GetResult()), suffix)
			}
			if failed > 0 {
				return silentError{fmt.Errorf("%d of %d objects failed", failed, len(docs))}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin (repeatable)")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "read directories recursively")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show the result without storing anything")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of objects that name none")
	return cmd
}

func resultWord(r configv1.ApplyResult) string {
	switch r {
	case configv1.ApplyResult_APPLY_RESULT_CREATED:
		return "created"
	case configv1.ApplyResult_APPLY_RESULT_CONFIGURED:
		return "configured"
	case configv1.ApplyResult_APPLY_RESULT_UNCHANGED:
		return "unchanged"
	}
	return "applied"
}

func newGetCmd(g *globals) *cobra.Command {
	var namespace, output, selector string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show configuration objects",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := parseKind(args[0])
			if k, n, ok := strings.Cut(args[0], "/"); ok {
				ref = parseKind(k)
				ref.Name = n
			}
			if len(args) == 2 {
				ref.Name = args[1]
			}
			if !all {
				ref.Namespace = namespace
			}
			cl, conn, err := g.configClient(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := contextWithTimeout(cmd, g)
			defer cancel()
			var objs [][]byte
			if ref.Name != "" {
				resp, err := cl.Get(ctx, &configv1.GetRequest{Ref: ref})
				if err != nil {
					return errors.New(describeErr(err))
				}
				objs = [][]byte{resp.GetObject()}
			} else {
				req := &configv1.ListRequest{Ref: ref, LabelSelector: selector}
				for {
					resp, err := cl.List(ctx, req)
					if err != nil {
						return errors.New(describeErr(err))
					}
					objs = append(objs, resp.GetObjects()...)
					if resp.GetContinue() == "" {
						break
					}
					req.Continue = resp.GetContinue()
				}
			}
			return printObjects(cmd.OutOrStdout(), objs, output, all, ref.Name != "")
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default: a table)")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector, e.g. app=echo")
	return cmd
}

// printObjects renders objects as a table, YAML or JSON.
func printObjects(w io.Writer, objs [][]byte, output string, withNamespace, single bool) error {
	switch output {
	case "json":
		if single {
			var v any
			if err := json.Unmarshal(objs[0], &v); err != nil {
				return err
			}
			return writeJSON(w, v)
		}
		items := make([]json.RawMessage, len(objs))
		for i, o := range objs {
			items[i] = o
		}
		return writeJSON(w, map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	case "yaml":
		for i, o := range objs {
			y, err := yaml.JSONToYAML(o)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			w.Write(y)
		}
		return nil
	case "":
	default:
		return usageErrorf("--output %q: must be yaml or json", output)
	}
	if len(objs) == 0 {
		fmt.Fprintln(w, "No resources found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	defer tw.Flush()
	var rows [][]string
	var header []string
	for _, o := range objs {
		var v map[string]any
		if err := json.Unmarshal(o, &v); err != nil {
			return err
		}
		h, row := tableRow(v)
		if withNamespace {
			h = append([]string{"NAMESPACE"}, h...)
			row = append([]string{str(v, "metadata", "namespace")}, row...)
		}
		header = h
		rows = append(rows, row)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return nil
}

// tableRow picks the columns kubectl users expect for the common kinds.
func tableRow(v map[string]any) ([]string, []string) {
	name := str(v, "metadata", "name")
	age := age(str(v, "metadata", "creationTimestamp"))
	switch str(v, "kind") {
	case "Service":
		return []string{"NAME", "CLUSTER-IP", "PORTS", "AGE"}, []string{name, str(v, "spec", "clusterIP"), ports(v), age}
	case "Pod":
		return []string{"NAME", "NODE", "IP", "PHASE", "AGE"}, []string{name, str(v, "spec", "nodeName"), str(v, "status", "podIP"), str(v, "status", "phase"), age}
	case "AuthorizationPolicy":
		action := str(v, "spec", "action")
		if action == "" {
			action = "ALLOW"
		}
		return []string{"NAME", "ACTION", "AGE"}, []string{name, action, age}
	case "Namespace":
		return []string{"NAME", "DATAPLANE-MODE", "AGE"}, []string{name, str(v, "metadata", "labels", "istio.io/dataplane-mode"), age}
	}
	return []string{"NAME", "AGE"}, []string{name, age}
}

func ports(v map[string]any) string {
	spec, _ := v["spec"].(map[string]any)
	list, _ := spec["ports"].([]any)
	var out []string
	for _, p := range list {
		m, _ := p.(map[string]any)
		proto, _ := m["protocol"].(string)
		if proto == "" {
			proto = "TCP"
		}
		out = append(out, fmt.Sprintf("%v/%s", m["port"], proto))
	}
	return strings.Join(out, ",")
}

func str(v map[string]any, path ...string) string {
	var cur any = v
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	switch x := cur.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

func age(ts string) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return "<unknown>"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newDeleteCmd(g *globals, stdin io.Reader) *cobra.Command {
	var namespace string
	var files []string
	cmd := &cobra.Command{
		Use:   "delete (KIND/NAME | KIND NAME | -f FILE)",
		Short: "Delete configuration objects",
		RunE: func(cmd *cobra.Command, args []string) error {
			var refs []*configv1.ObjectRef
			if len(files) > 0 {
				docs, err := manifest.Read(files, false, stdin)
				if err != nil {
					return err
				}
				for _, d := range docs {
					ns := d.Namespace
					if ns == "" {
						ns = namespace
					}
					refs = append(refs, &configv1.ObjectRef{ApiVersion: d.APIVersion, Kind: d.Kind, Namespace: ns, Name: d.Name})
				}
			} else {
				ref, err := parseTarget(args)
				if err != nil {
					return err
				}
				ref.Namespace = namespace
				refs = append(refs, ref)
			}
			cl, conn, err := g.configClient(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			failed := 0
			for _, ref := range refs {
				ctx, cancel := contextWithTimeout(cmd, g)
				resp, err := cl.Delete(ctx, &configv1.DeleteRequest{Ref: ref})
				cancel()
				if err != nil {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "error: %s/%s: %s\n", strings.ToLower(ref.GetKind()), ref.GetName(), describeErr(err))
					continue
				}
				var h struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
				}
				_ = json.Unmarshal(resp.GetObject(), &h)
				fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", manifest.Ref(h.APIVersion, h.Kind, ref.GetName()))
			}
			if failed > 0 {
				return silentError{fmt.Errorf("%d of %d deletes failed", failed, len(refs))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "delete the objects of these manifests")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "status KIND/NAME",
		Short: "Show how far an object's current version has reached the proxies",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := parseTarget(args)
			if err != nil {
				return err
			}
			ref.Namespace = namespace
			cl, conn, err := g.configClient(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := contextWithTimeout(cmd, g)
			defer cancel()
			st, err := cl.Status(ctx, &configv1.StatusRequest{Ref: ref})
			if err != nil {
				return errors.New(describeErr(err))
			}
			printStatus(cmd.OutOrStdout(), ref, st)
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	return cmd
}

func printStatus(w io.Writer, ref *configv1.ObjectRef, st *configv1.StatusResponse) {
	fmt.Fprintf(w, "%s/%s at resourceVersion %d: %d/%d proxies converged\n",
		strings.ToLower(ref.GetKind()), ref.GetName(), st.GetRevision(), st.GetProxiesConverged(), st.GetProxiesTotal())
	sort.Slice(st.Pending, func(i, j int) bool { return st.Pending[i].ProxyId < st.Pending[j].ProxyId })
	for _, p := range st.GetPending() {
		fmt.Fprintf(w, "  pending   %s (replica %s, acked %d)\n", p.GetProxyId(), p.GetReplica(), p.GetAckedRevision())
	}
	for _, p := range st.GetRejected() {
		fmt.Fprintf(w, "  rejected  %s (replica %s, revision %d): %s\n", p.GetProxyId(), p.GetReplica(), p.GetNackedRevision(), p.GetNackError())
	}
}

func newWaitCmd(g *globals) *cobra.Command {
	var namespace, forCond string
	var timeout, interval time.Duration
	cmd := &cobra.Command{
		Use:   "wait --for=converged KIND/NAME",
		Short: "Wait until every connected proxy has acknowledged an object's current version",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if forCond != "converged" {
				return usageErrorf("--for=%q: only converged is supported", forCond)
			}
			ref, err := parseTarget(args)
			if err != nil {
				return err
			}
			ref.Namespace = namespace
			cl, conn, err := g.configClient(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Close()
			deadline := time.Now().Add(timeout)
			tick := time.NewTicker(interval)
			defer tick.Stop()
			var last *configv1.StatusResponse
			for {
				ctx, cancel := contextWithTimeout(cmd, g)
				st, err := cl.Status(ctx, &configv1.StatusRequest{Ref: ref})
				cancel()
				if err != nil {
					return errors.New(describeErr(err))
				}
				last = st
				if len(st.GetPending()) == 0 && len(st.GetRejected()) == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%s/%s converged: %d/%d proxies at resourceVersion %d\n",
						strings.ToLower(ref.GetKind()), ref.GetName(), st.GetProxiesConverged(), st.GetProxiesTotal(), st.GetRevision())
					return nil
				}
				if len(st.GetRejected()) > 0 {
					printStatus(cmd.ErrOrStderr(), ref, st)
					return fmt.Errorf("%d proxies rejected the configuration", len(st.GetRejected()))
				}
				if time.Now().After(deadline) {
					printStatus(cmd.ErrOrStderr(), ref, last)
					return fmt.Errorf("timed out after %s waiting for %s/%s to converge", timeout, strings.ToLower(ref.GetKind()), ref.GetName())
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-tick.C:
				}
			}
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().StringVar(&forCond, "for", "", "condition to wait for: converged")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "give up after this long")
	cmd.Flags().DurationVar(&interval, "poll-interval", 200*time.Millisecond, "how often to ask")
	return cmd
}
