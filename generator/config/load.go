// Loading a configuration: the embedded default underneath, strict decoding,
// and the errors that name a field and its fix.

package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Error is a configuration error: the field path and what is wrong with it.
// Callers exit with status 2 on it.
type Error struct {
	Source string // file name, or "" for the embedded default
	Fields []FieldError
}

// FieldError names one bad field and the fix.
type FieldError struct {
	Path    string
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	src := e.Source
	if src == "" {
		src = "default configuration"
	}
	fmt.Fprintf(&b, "invalid configuration %s:", src)
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "\n  %s: %s", f.Path, f.Message)
	}
	return b.String()
}

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := Parse(nil, "")
	if err != nil {
		panic(fmt.Sprintf("embedded default configuration is invalid: %v", err))
	}
	return c
}

// Load reads a configuration file; path "" means the embedded default.
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse(nil, "")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes data strictly on top of the embedded default and validates
// the result. source names the data in error messages.
func Parse(data []byte, source string) (*Config, error) {
	var c Config
	if fields := decodeStrict(defaultYAML, &c); len(fields) > 0 {
		return nil, &Error{Fields: fields}
	}
	if len(bytes.TrimSpace(data)) > 0 {
		// encoding/json decodes a list into the elements already there, so a
		// user's architecture list would inherit fields of the default's
		// entries. A list the user gives replaces the default's whole.
		var top map[string]any
		if err := yaml.Unmarshal(data, &top); err != nil {
			return nil, &Error{Source: source, Fields: []FieldError{{Path: "(file)", Message: "not valid YAML: " + err.Error()}}}
		}
		if _, ok := top["architectures"]; ok {
			c.Architectures = nil
		}
		if fields := decodeStrict(data, &c); len(fields) > 0 {
			return nil, &Error{Source: source, Fields: fields}
		}
	}
	if errs := c.Validate(); len(errs) > 0 {
		return nil, &Error{Source: source, Fields: errs}
	}
	return &c, nil
}

// decodeStrict decodes YAML data into c, case-sensitively, refusing unknown
// and duplicate fields. encoding/json (behind sigs.k8s.io/yaml's strict mode)
// matches field names case-insensitively, so "pushretries" would pass for
// pushRetries; sigs.k8s.io/json is the decoder Kubernetes itself uses.
func decodeStrict(data []byte, c *Config) []FieldError {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return []FieldError{{Path: "(file)", Message: "not valid YAML: " + err.Error()}}
	}
	strict, err := sigsjson.UnmarshalStrict(j, c, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return []FieldError{typeError(err)}
	}
	var out []FieldError
	for _, e := range strict {
		msg := e.Error()
		if m := unknownField.FindStringSubmatch(msg); m != nil {
			if m[1] == "build.storageDriver" {
				out = append(out, FieldError{Path: m[1], Message: storageDriverRenamed(data)})
				continue
			}
			if now, ok := renamedFields[m[1]]; ok {
				out = append(out, FieldError{Path: m[1], Message: "renamed to " + now + "; rename the field"})
				continue
			}
			out = append(out, FieldError{Path: m[1], Message: "unknown field; run `generator config` to see every field this version accepts"})
			continue
		}
		if m := duplicateField.FindStringSubmatch(msg); m != nil {
			out = append(out, FieldError{Path: m[1], Message: "given twice; keep one"})
			continue
		}
		out = append(out, FieldError{Path: "(file)", Message: msg})
	}
	return out
}

// renamedFields are old field paths, so that a configuration written for an
// earlier version is told the new name instead of "unknown field".
var renamedFields = map[string]string{
	// The loader installs the seccomp profile too, AppArmor or not.
	"cluster.apparmorLoaderImage": "cluster.nodeProfileLoaderImage",
}

// storageDriverRenamed is the message for build.storageDriver, whose values
// changed meaning with its rename: its overlay was fuse-overlayfs, while
// build.storage's overlay is the kernel's. It names the value to write.
func storageDriverRenamed(data []byte) string {
	var top struct {
		Build struct {
			StorageDriver any `json:"storageDriver"`
		} `json:"build"`
	}
	_ = yaml.Unmarshal(data, &top)
	switch top.Build.StorageDriver {
	case "overlay":
		return "renamed to build.storage, whose overlay is now the kernel's own: for what storageDriver: overlay did (fuse-overlayfs, " +
			"needs the fuse device plugin) write storage: fuse-overlayfs; or storage: auto, the default, which needs no /dev/fuse where the kernel mounts overlay"
	case "vfs":
		return "renamed to build.storage; write storage: vfs"
	}
	return "renamed to build.storage; use auto, overlay (the kernel's), fuse-overlayfs or vfs"
}

var (
	unknownField   = regexp.MustCompile(`unknown field "([^"]+)"`)
	duplicateField = regexp.MustCompile(`duplicate field "([^"]+)"`)
)

// typeError names the field of a JSON type error.
func typeError(err error) FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return FieldError{Path: te.Field, Message: fmt.Sprintf("wrong type: got %s, want %s", te.Value, te.Type)}
	}
	return FieldError{Path: "(file)", Message: err.Error()}
}
