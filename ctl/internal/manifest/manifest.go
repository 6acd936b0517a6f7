// Package manifest reads the objects ambitctl sends to the config API from
// files, directories and standard input. It only splits documents and reads
// their identifying fields; decoding and validation are the config
// service's job, so ambitctl never disagrees with the server about what is
// valid.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Doc is one object of a manifest, as JSON.
type Doc struct {
	// Source says where the document came from, e.g. "app.yaml#2".
	Source     string
	JSON       []byte
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// Read collects the documents of every path: a file, a directory (its
// .yaml, .yml and .json files; with recursive, those of subdirectories too),
// or "-" for stdin.
func Read(paths []string, recursive bool, stdin io.Reader) ([]Doc, error) {
	var docs []Doc
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("stdin: %w", err)
			}
			d, err := Split("stdin", data)
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
			continue
		}
		files, err := expand(p, recursive)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			d, err := Split(f, data)
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
		}
	}
	return docs, nil
}

func expand(p string, recursive bool) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != p && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			files = append(files, path)
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

// Split cuts a multi-document YAML (or JSON) manifest into objects; empty
// documents are skipped and `kind: List` documents contribute their items.
func Split(source string, data []byte) ([]Doc, error) {
	var docs []Doc
	for i, raw := range splitYAML(data) {
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s#%d: %w", source, i+1, err)
		}
		j = bytes.TrimSpace(j)
		if len(j) == 0 || bytes.Equal(j, []byte("null")) {
			continue
		}
		var h header
		if err := json.Unmarshal(j, &h); err != nil {
			return nil, fmt.Errorf("%s#%d: not an object: %w", source, i+1, err)
		}
		src := fmt.Sprintf("%s#%d", source, i+1)
		if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
			for k, item := range h.Items {
				d, err := doc(fmt.Sprintf("%s.items[%d]", src, k), item)
				if err != nil {
					return nil, err
				}
				docs = append(docs, d)
			}
			continue
		}
		d, err := doc(src, j)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

func doc(source string, j []byte) (Doc, error) {
	var h header
	if err := json.Unmarshal(j, &h); err != nil {
		return Doc{}, fmt.Errorf("%s: not an object: %w", source, err)
	}
	return Doc{Source: source, JSON: j, APIVersion: h.APIVersion, Kind: h.Kind, Namespace: h.Metadata.Namespace, Name: h.Metadata.Name}, nil
}

// splitYAML cuts at lines that are exactly "---" (optionally followed by a
// comment or spaces), the YAML document separator.
func splitYAML(data []byte) [][]byte {
	var out [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if t := strings.TrimRight(line, " \t"); t == "---" || strings.HasPrefix(t, "--- #") {
			out = append(out, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	out = append(out, cur.Bytes())
	return out
}

// Ref renders kubectl's "kind.group/name" form.
func Ref(apiVersion, kind, name string) string {
	group := ""
	if i := strings.LastIndex(apiVersion, "/"); i >= 0 {
		group = apiVersion[:i]
	}
	k := strings.ToLower(kind)
	if group != "" {
		k += "." + group
	}
	return k + "/" + name
}
