package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxJSONDepth bounds nesting so hostile input cannot exhaust the stack.
const maxJSONDepth = 100

// parseJSONTree parses one JSON value into map[string]any, []any, string,
// json.Number, bool or nil. Unlike json.Unmarshal it rejects duplicate
// object keys (naming their path) and keeps numbers exact.
func parseJSONTree(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJSONValue(dec, nil, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, ErrorList{errInvalid(nil, rawText("document"), "invalid JSON", "unexpected data after the top-level value")}
	}
	return v, nil
}

func readJSONValue(dec *json.Decoder, p *field.Path, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, ErrorList{errInvalid(p, rawText("value"), "nesting too deep", "at most 100 levels are allowed")}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, ErrorList{errInvalid(p, rawText("document"), "invalid JSON", err.Error())}
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := map[string]any{}
			for dec.More() {
				keyTok, err := dec.Token()
				if err != nil {
					return nil, ErrorList{errInvalid(p, rawText("document"), "invalid JSON", err.Error())}
				}
				key, _ := keyTok.(string)
				if _, dup := obj[key]; dup {
					return nil, ErrorList{&FieldError{Type: ErrorTypeDuplicate, Field: pathString(p), Value: quote(key), Summary: "duplicate field"}}
				}
				v, err := readJSONValue(dec, p.Child(key), depth+1)
				if err != nil {
					return nil, err
				}
				obj[key] = v
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, ErrorList{errInvalid(p, rawText("document"), "invalid JSON", err.Error())}
			}
			return obj, nil
		case '[':
			list := []any{}
			for i := 0; dec.More(); i++ {
				v, err := readJSONValue(dec, p.Index(i), depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, ErrorList{errInvalid(p, rawText("document"), "invalid JSON", err.Error())}
			}
			return list, nil
		}
		return nil, ErrorList{errInvalid(p, rawText(t.String()), "invalid JSON", "unexpected delimiter")}
	default:
		return t, nil // string, json.Number, bool or nil
	}
}
