// Package render turns typed objects into the YAML files of the catalog and
// writes a set of files to disk atomically, or compares it with what is there.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// YAML renders obj as YAML, keeping the Go field order of its JSON form (so
// name comes first, as people write Tekton YAML) and dropping the noise
// typed objects serialize: nulls, empty objects and empty descriptions.
// Empty lists stay: `default: []` on an array param means something.
func YAML(obj any) ([]byte, error) {
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	n, err := decode(dec)
	if err != nil {
		return nil, err
	}
	n = prune(n, "")
	dropStatus(n)
	if n == nil {
		return nil, fmt.Errorf("render: %T renders to nothing", obj)
	}
	apiVersionFirst(n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// apiVersionFirst puts apiVersion before kind, as every Kubernetes manifest
// does; TypeMeta declares them the other way round.
func apiVersionFirst(n *yaml.Node) {
	if n.Kind != yaml.MappingNode || len(n.Content) < 4 {
		return
	}
	if n.Content[0].Value == "kind" && n.Content[2].Value == "apiVersion" {
		n.Content[0], n.Content[1], n.Content[2], n.Content[3] = n.Content[2], n.Content[3], n.Content[0], n.Content[1]
	}
}

// decode reads one JSON value into a yaml.Node, keeping key order.
func decode(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("render: object key %v is not a string", kt)
				}
				v, err := decode(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, scalar("!!str", k), v)
			}
			_, err := dec.Token() // '}'
			return n, err
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				v, err := decode(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
			_, err := dec.Token() // ']'
			return n, err
		}
	case string:
		return scalar("!!str", t), nil
	case json.Number:
		if strings.ContainsAny(t.String(), ".eE") {
			return scalar("!!float", t.String()), nil
		}
		return scalar("!!int", t.String()), nil
	case bool:
		return scalar("!!bool", fmt.Sprint(t)), nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("render: unexpected JSON token %v", tok)
}

func scalar(tag, v string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v}
	if tag == "!!str" && strings.Contains(v, "\n") {
		// Scripts and long descriptions read as blocks, as people write them.
		n.Style = yaml.LiteralStyle
	}
	return n
}

// listItem is the key prune sees for list elements: an empty string in a
// list (RBAC's core API group "") is a value, not noise.
const listItem = "[]"

// meaningfulEmpty are the keys whose empty object means something and stays.
var meaningfulEmpty = map[string]bool{"emptyDir": true}

// dropStatus removes a top-level status: generated objects are desired
// state, and typed statuses serialize zero counters.
func dropStatus(n *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "status" {
			n.Content = append(n.Content[:i], n.Content[i+2:]...)
			return
		}
	}
}

// prune drops nulls, empty objects (but emptyDir: {}) and empty strings
// (but chosen values); it returns nil when n itself is to be dropped.
func prune(n *yaml.Node, key string) *yaml.Node {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		// "" is noise (description: "", serviceAccountName: "") except where
		// it is a value someone chose: a param default or a param/env value.
		if n.Tag == "!!str" && n.Value == "" && key != "default" && key != "value" && key != listItem {
			return nil
		}
		return n
	case yaml.MappingNode:
		var kept []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := prune(n.Content[i+1], n.Content[i].Value); v != nil {
				kept = append(kept, n.Content[i], v)
			}
		}
		n.Content = kept
		if len(kept) == 0 && !meaningfulEmpty[key] {
			return nil
		}
		if len(kept) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case yaml.SequenceNode:
		var kept []*yaml.Node
		for _, c := range n.Content {
			if v := prune(c, listItem); v != nil {
				kept = append(kept, v)
			} else {
				// An element that prunes to nothing still counts: keep it as {}.
				kept = append(kept, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle})
			}
		}
		n.Content = kept
		return n
	}
	return n
}

// Documents joins YAML documents into one multi-document stream.
func Documents(w io.Writer, docs ...[]byte) error {
	for i, d := range docs {
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(d); err != nil {
			return err
		}
	}
	return nil
}
