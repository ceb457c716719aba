// Package config holds the generator's configuration: its schema, the embedded
// default, strict decoding and validation. Everything downstream trusts a
// Config that Load returned.
package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the commented default configuration, as `generator config` prints it.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole input of the generator.
type Config struct {
	Catalog       Catalog        `json:"catalog"`
	Architectures []Architecture `json:"architectures"`
	Images        Images         `json:"images"`
	Build         Build          `json:"build"`
	AppArmor      AppArmor       `json:"apparmor"`
	Seccomp       Seccomp        `json:"seccomp"`
	Cluster       Cluster        `json:"cluster"`
	Triggers      Triggers       `json:"triggers"`
	Example       Example        `json:"example"`
}

// Triggers is about building on git push.
type Triggers struct {
	Provider       string   `json:"provider"`
	Repositories   []string `json:"repositories"`
	Branches       []string `json:"branches"`
	Tags           bool     `json:"tags"`
	WebhookSecret  string   `json:"webhookSecret"`
	ServiceAccount string   `json:"serviceAccount"`
	IngressHost    string   `json:"ingressHost"`
	// Pipeline a push runs: PipelineExplicit or PipelineMatrix.
	Pipeline string `json:"pipeline"`
}

// The catalog's Pipelines, as triggers.pipeline names them (the pipeline
// package, which imports this one, has the same names).
const (
	PipelineExplicit = "multiarch-build"
	PipelineMatrix   = "multiarch-build-matrix"
)

// Providers.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
)

// Cluster is about the node-level prerequisites.
type Cluster struct {
	Namespace              string              `json:"namespace"`
	FuseDevicePluginImage  string              `json:"fuseDevicePluginImage"`
	FuseCapacity           int                 `json:"fuseCapacity"`
	NodeProfileLoaderImage string              `json:"nodeProfileLoaderImage"`
	Tolerations            []corev1.Toleration `json:"tolerations"`
}

// Catalog is about the published catalog itself.
type Catalog struct {
	Version string `json:"version"`
}

// Architecture is one native build.
type Architecture struct {
	Name         string              `json:"name"`
	Variant      string              `json:"variant,omitempty"`
	NodeSelector map[string]string   `json:"nodeSelector,omitempty"`
	Tolerations  []corev1.Toleration `json:"tolerations,omitempty"`
}

// Images are the step images; each must be pinned.
type Images struct {
	GitSync string `json:"gitSync"`
	Buildah string `json:"buildah"`
}

// Build holds the knobs of the buildah build.
type Build struct {
	FuseResource string `json:"fuseResource"`
	// Storage is how buildah stores layers: one of the Storage* modes.
	Storage        string `json:"storage"`
	EmptyDirMedium string `json:"emptyDirMedium"`
	PushRetries    int    `json:"pushRetries"`
	// Cache is the default of the build's CACHE param: buildah's layer cache
	// in the registry, one repository per architecture.
	Cache bool `json:"cache"`
	// UserNamespaces runs every pod of the catalog with hostUsers: false
	// (userns.go).
	UserNamespaces bool `json:"userNamespaces"`
}

// AppArmor names the profile the build step runs under and how it is requested.
type AppArmor struct {
	Profile string `json:"profile"`
	Mode    string `json:"mode"`
}

// Seccomp names the Localhost seccomp profile the buildah steps run under
// and where the kubelet looks for it on every node.
type Seccomp struct {
	// Profile is the step's localhostProfile: a path relative to KubeletDir.
	Profile    string `json:"profile"`
	KubeletDir string `json:"kubeletDir"`
}

// Example is what the example PipelineRun and the samples build.
type Example struct {
	Namespace      string `json:"namespace"`
	GitURL         string `json:"gitURL"`
	GitRef         string `json:"gitRef"`
	Image          string `json:"image"`
	RegistrySecret string `json:"registrySecret"`
	ServiceAccount string `json:"serviceAccount"`
}

// AppArmor modes.
const (
	AppArmorField      = "field"
	AppArmorAnnotation = "annotation"
	// AppArmorNone is for nodes whose kernel has no AppArmor: the kubelet
	// refuses every pod that asks for a profile there.
	AppArmorNone = "none"
)

// Storage modes (build.storage, the build Task's STORAGE param).
const (
	// StorageAuto is the kernel's overlay where buildah can use it, else
	// fuse-overlayfs where the container has /dev/fuse, else vfs.
	StorageAuto = "auto"
	// StorageOverlay is the kernel's overlay, mounted in the user namespace
	// buildah creates (Linux >= 5.11): no /dev/fuse.
	StorageOverlay = "overlay"
	// StorageFuseOverlayfs is overlay through fuse-overlayfs: needs /dev/fuse,
	// which the Task then requests from the fuse device plugin.
	StorageFuseOverlayfs = "fuse-overlayfs"
	// StorageVFS copies every layer in full: slower, more disk, needs nothing.
	StorageVFS = "vfs"
)

// StorageModes lists the storage modes, as messages name them.
var StorageModes = []string{StorageAuto, StorageOverlay, StorageFuseOverlayfs, StorageVFS}

// NeedsFuse says whether the build needs /dev/fuse from the fuse device
// plugin: only fuse-overlayfs does. auto falls back to vfs where a pod has
// no /dev/fuse, so it must not keep builds off nodes without the plugin.
func (b Build) NeedsFuse() bool { return b.Storage == StorageFuseOverlayfs }

// UsesAppArmor says whether the build steps ask for the AppArmor profile.
func (a AppArmor) UsesAppArmor() bool { return a.Mode != AppArmorNone }

// Platform is the OCI platform string buildah takes, e.g. linux/arm/v7.
func (a Architecture) Platform() string {
	if a.Variant != "" {
		return "linux/" + a.Name + "/" + a.Variant
	}
	return "linux/" + a.Name
}

// ID is the architecture as it appears in task names and tags: arm64, arm-v7.
func (a Architecture) ID() string {
	if a.Variant != "" {
		return a.Name + "-" + a.Variant
	}
	return a.Name
}

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

// Known architectures, by Go's names, with the variants each accepts.
var knownArchitectures = map[string][]string{
	"386":     nil,
	"amd64":   nil,
	"arm":     {"v6", "v7"},
	"arm64":   {"v8"},
	"ppc64le": nil,
	"riscv64": nil,
	"s390x":   nil,
}

func archNames() string {
	names := make([]string, 0, len(knownArchitectures))
	for n := range knownArchitectures {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

var (
	catalogVersion = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	repositoryName = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`)
	branchName     = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_./-]*$`)
	floatingTags   = []string{"latest", "stable", "main", "master", "edge", "nightly", "dev"}
)

// Validate checks every field and returns all problems at once.
func (c *Config) Validate() []FieldError {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}

	if !catalogVersion.MatchString(c.Catalog.Version) {
		add("catalog.version", "%q is not a catalog version; use MAJOR.MINOR, e.g. \"0.1\"", c.Catalog.Version)
	}

	if len(c.Architectures) == 0 {
		add("architectures", "empty; list at least one architecture (allowed: %s)", archNames())
	}
	seen := map[string]int{}
	for i, a := range c.Architectures {
		p := fmt.Sprintf("architectures[%d]", i)
		variants, known := knownArchitectures[a.Name]
		switch {
		case a.Name == "":
			add(p+".name", "missing; allowed: %s", archNames())
		case !known:
			add(p+".name", "%q is not a known architecture; allowed (Go's names): %s", a.Name, archNames())
		case a.Variant != "" && !slices.Contains(variants, a.Variant):
			if len(variants) == 0 {
				add(p+".variant", "%s has no variants; remove the field", a.Name)
			} else {
				add(p+".variant", "%q is not a variant of %s; allowed: %s", a.Variant, a.Name, strings.Join(variants, ", "))
			}
		case a.Name == "arm" && a.Variant == "":
			add(p+".variant", "required for arm; allowed: v6, v7")
		}
		if j, dup := seen[a.ID()]; dup {
			add(p, "duplicate of architectures[%d] (%s); list each platform once", j, a.Platform())
		} else {
			seen[a.ID()] = i
		}
		for k, v := range a.NodeSelector {
			kp := fmt.Sprintf("%s.nodeSelector[%s]", p, k)
			if k == corev1.LabelArchStable {
				add(kp, "set by the generator from name; remove it")
				continue
			}
			for _, m := range validation.IsQualifiedName(k) {
				add(kp, "bad label key: %s", m)
			}
			for _, m := range validation.IsValidLabelValue(v) {
				add(kp, "bad label value %q: %s", v, m)
			}
		}
		errs = append(errs, validateTolerations(p+".tolerations", a.Tolerations)...)
	}

	checkImage := func(path, ref string) {
		if msg := PinnedImageProblem(ref); msg != "" {
			add(path, "%s", msg)
		}
	}
	checkImage("images.gitSync", c.Images.GitSync)
	checkImage("images.buildah", c.Images.Buildah)
	checkImage("cluster.fuseDevicePluginImage", c.Cluster.FuseDevicePluginImage)
	checkImage("cluster.nodeProfileLoaderImage", c.Cluster.NodeProfileLoaderImage)
	for _, m := range validation.IsDNS1123Label(c.Cluster.Namespace) {
		add("cluster.namespace", "%q: %s", c.Cluster.Namespace, m)
	}
	if c.Cluster.FuseCapacity < 1 || c.Cluster.FuseCapacity > 100000 {
		add("cluster.fuseCapacity", "%d is out of range; use 1 to 100000", c.Cluster.FuseCapacity)
	}
	errs = append(errs, validateTolerations("cluster.tolerations", c.Cluster.Tolerations)...)

	if msg := extendedResourceProblem(c.Build.FuseResource); msg != "" {
		add("build.fuseResource", "%s", msg)
	}
	if !slices.Contains(StorageModes, c.Build.Storage) {
		add("build.storage", "%q is not a storage mode; use auto (the kernel's overlay where it can serve, else fuse-overlayfs where /dev/fuse is, else vfs), "+
			"overlay (the kernel's overlay: Linux >= 5.11, buildah >= 1.35), fuse-overlayfs (needs the fuse device plugin) or vfs", c.Build.Storage)
	}
	switch corev1.StorageMedium(c.Build.EmptyDirMedium) {
	case corev1.StorageMediumDefault, corev1.StorageMediumMemory:
	default:
		add("build.emptyDirMedium", "%q is not supported; use \"\" (node disk) or Memory", c.Build.EmptyDirMedium)
	}
	if c.Build.PushRetries < 0 || c.Build.PushRetries > 10 {
		add("build.pushRetries", "%d is out of range; use 0 to 10", c.Build.PushRetries)
	}

	if msgs := validation.IsDNS1123Subdomain(c.AppArmor.Profile); len(msgs) > 0 {
		add("apparmor.profile", "%q is not a usable profile name: %s (the security-profiles-operator names an object after it)", c.AppArmor.Profile, strings.Join(msgs, "; "))
	}
	switch c.AppArmor.Mode {
	case AppArmorField, AppArmorAnnotation, AppArmorNone:
	default:
		add("apparmor.mode", "%q is not a mode; use field (Kubernetes >= 1.30), annotation (older clusters) or none (nodes without AppArmor)", c.AppArmor.Mode)
	}
	if msg := SeccompProfileProblem(c.Seccomp.Profile); msg != "" {
		add("seccomp.profile", "%s", msg)
	}
	if msg := kubeletDirProblem(c.Seccomp.KubeletDir); msg != "" {
		add("seccomp.kubeletDir", "%s", msg)
	}

	switch c.Triggers.Provider {
	case ProviderGitHub, ProviderGitLab:
	default:
		add("triggers.provider", "%q is not supported; use github or gitlab", c.Triggers.Provider)
	}
	switch c.Triggers.Pipeline {
	case PipelineExplicit, PipelineMatrix:
	default:
		add("triggers.pipeline", "%q is not a Pipeline of this catalog; use %s (a taskRunSpec pins each architecture) or %s (needs examples/cluster/arch-pinning.yaml)", c.Triggers.Pipeline, PipelineExplicit, PipelineMatrix)
	}
	if len(c.Triggers.Repositories) == 0 {
		add("triggers.repositories", "empty; list the repositories whose pushes build, e.g. me/app")
	}
	for i, r := range c.Triggers.Repositories {
		if !repositoryName.MatchString(r) {
			add(fmt.Sprintf("triggers.repositories[%d]", i), "%q is not owner/name (GitLab: group/sub/name)", r)
		}
	}
	if len(c.Triggers.Branches) == 0 && !c.Triggers.Tags {
		add("triggers.branches", "empty and tags is false: no push would ever build; list branches or set tags: true")
	}
	for i, b := range c.Triggers.Branches {
		if !branchName.MatchString(b) || strings.Contains(b, "..") {
			add(fmt.Sprintf("triggers.branches[%d]", i), "%q is not a branch name this generator accepts (letters, digits, '.', '_', '-', '/')", b)
		}
	}
	for _, f := range []struct{ path, name string }{
		{"triggers.webhookSecret", c.Triggers.WebhookSecret},
		{"triggers.serviceAccount", c.Triggers.ServiceAccount},
	} {
		for _, m := range validation.IsDNS1123Subdomain(f.name) {
			add(f.path, "%q: %s", f.name, m)
		}
	}
	if c.Triggers.IngressHost != "" {
		for _, m := range validation.IsDNS1123Subdomain(c.Triggers.IngressHost) {
			add("triggers.ingressHost", "%q: %s", c.Triggers.IngressHost, m)
		}
	}

	for _, m := range validation.IsDNS1123Label(c.Example.Namespace) {
		add("example.namespace", "%q: %s", c.Example.Namespace, m)
	}
	if strings.TrimSpace(c.Example.GitURL) == "" {
		add("example.gitURL", "missing; give the repository to clone, e.g. https://github.com/me/app.git")
	}
	if strings.TrimSpace(c.Example.GitRef) == "" {
		add("example.gitRef", "missing; give a branch, a tag or a full commit SHA")
	}
	if msg := TaggedImageProblem(c.Example.Image); msg != "" {
		add("example.image", "%s", msg)
	}
	if c.Example.RegistrySecret != "" {
		for _, m := range validation.IsDNS1123Subdomain(c.Example.RegistrySecret) {
			add("example.registrySecret", "%q: %s", c.Example.RegistrySecret, m)
		}
	}
	if c.Example.ServiceAccount != "" {
		for _, m := range validation.IsDNS1123Subdomain(c.Example.ServiceAccount) {
			add("example.serviceAccount", "%q: %s", c.Example.ServiceAccount, m)
		}
	}
	return errs
}

func validateTolerations(path string, ts []corev1.Toleration) []FieldError {
	var errs []FieldError
	add := func(p, format string, args ...any) {
		errs = append(errs, FieldError{Path: p, Message: fmt.Sprintf(format, args...)})
	}
	for j, t := range ts {
		tp := fmt.Sprintf("%s[%d]", path, j)
		if t.Key != "" {
			for _, m := range validation.IsQualifiedName(t.Key) {
				add(tp+".key", "%s", m)
			}
		}
		switch t.Operator {
		case "", corev1.TolerationOpEqual:
			if t.Key == "" {
				add(tp+".key", "required with operator Equal; use operator Exists to tolerate every taint")
			}
		case corev1.TolerationOpExists:
			if t.Value != "" {
				add(tp+".value", "must be empty when operator is Exists")
			}
		default:
			add(tp+".operator", "%q is not allowed; use Equal or Exists", t.Operator)
		}
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			add(tp+".effect", "%q is not allowed; use NoSchedule, PreferNoSchedule or NoExecute", t.Effect)
		}
	}
	return errs
}

// PinnedImageProblem says why ref is not a pinned image reference, or "".
// Pinned means a digest, or an exact tag that is not one of the floating ones.
func PinnedImageProblem(ref string) string {
	if strings.TrimSpace(ref) == "" {
		return "empty; give an image pinned by exact tag or digest, e.g. quay.io/buildah/stable:v1.40.1"
	}
	if strings.Contains(ref, "@") {
		if _, err := name.NewDigest(ref, name.StrictValidation); err != nil {
			return fmt.Sprintf("%q is not a valid image reference (%v); write it in full, e.g. quay.io/buildah/stable:v1.40.1@sha256:...", ref, err)
		}
		return ""
	}
	if !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
		return fmt.Sprintf("%q has no tag or digest; pin it, e.g. %s:v1.2.3 or %s@sha256:...", ref, ref, ref)
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Sprintf("%q is not a valid image reference (%v); write it in full, e.g. quay.io/buildah/stable:v1.40.1", ref, err)
	}
	if slices.Contains(floatingTags, tag.TagStr()) || !strings.ContainsAny(tag.TagStr(), "0123456789") {
		return fmt.Sprintf("%q uses the floating tag %q; pin an exact version tag or a digest", ref, tag.TagStr())
	}
	return ""
}

// TaggedImageProblem says why ref cannot be a push target with a tag, or "".
// The per-architecture images are pushed as <tag>-<arch>, so a tag is required
// and a digest is meaningless for something not yet built.
func TaggedImageProblem(ref string) string {
	if strings.TrimSpace(ref) == "" {
		return "empty; give the image to push, e.g. registry.example.com/me/app:v1"
	}
	if strings.Contains(ref, "@") {
		return fmt.Sprintf("%q has a digest; give a tag to push to, e.g. registry.example.com/me/app:v1", ref)
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Sprintf("%q is not an image reference with a tag (%v); e.g. registry.example.com/me/app:v1", ref, err)
	}
	// The per-arch tag adds up to 7 characters (-arm-v7, -ppc64le); tags are at most 128.
	if len(tag.TagStr()) > 120 {
		return fmt.Sprintf("tag %q is too long: per-architecture tags add a suffix and must stay within 128 characters", tag.TagStr())
	}
	return ""
}

var safePath = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)

// SeccompProfileProblem says why p cannot be the build steps'
// localhostProfile, or "". The kubelet resolves it under its seccomp
// directory and the node-profile loader writes it there, so it must stay
// inside that directory.
func SeccompProfileProblem(p string) string {
	const example = "e.g. tekton-multiarch/buildah.json"
	switch {
	case p == "":
		return "empty; give the profile's path under the kubelet's seccomp directory, " + example
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q is absolute; give a path relative to the kubelet's seccomp directory (seccomp.kubeletDir), %s", p, example)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Sprintf("%q leaves the kubelet's seccomp directory; remove the '..', %s", p, example)
	case !safePath.MatchString(p):
		return fmt.Sprintf("%q may only hold letters, digits, '.', '_', '-' and '/', %s", p, example)
	case path.Clean(p) != p:
		return fmt.Sprintf("%q is not a clean path; write it as %q", p, path.Clean(p))
	case !strings.HasSuffix(p, ".json") || strings.HasSuffix(p, "/.json"):
		return fmt.Sprintf("%q does not name a .json file; the profile is JSON, %s", p, example)
	}
	return ""
}

func kubeletDirProblem(d string) string {
	const example = "the kubelet's default is /var/lib/kubelet/seccomp (<kubelet --root-dir>/seccomp)"
	switch {
	case d == "":
		return "empty; give the kubelet's seccomp directory on the nodes; " + example
	case !strings.HasPrefix(d, "/"):
		return fmt.Sprintf("%q is relative; give the absolute path on the nodes; %s", d, example)
	case slices.Contains(strings.Split(d, "/"), ".."):
		return fmt.Sprintf("%q has a '..'; give the directory itself; %s", d, example)
	case !safePath.MatchString(d):
		return fmt.Sprintf("%q may only hold letters, digits, '.', '_', '-' and '/'; %s", d, example)
	case path.Clean(d) != d:
		return fmt.Sprintf("%q is not a clean path; write it as %q", d, path.Clean(d))
	case d == "/":
		return "\"/\" is the node's root; " + example
	}
	return ""
}

func extendedResourceProblem(r string) string {
	if r == "" {
		return "empty; give the resource the fuse device plugin advertises, e.g. github.com/fuse"
	}
	if msgs := validation.IsQualifiedName(r); len(msgs) > 0 {
		return fmt.Sprintf("%q is not a resource name: %s", r, strings.Join(msgs, "; "))
	}
	domain, _, ok := strings.Cut(r, "/")
	if !ok {
		return fmt.Sprintf("%q has no domain; extended resources are domain/name, e.g. github.com/fuse", r)
	}
	if domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io") {
		return fmt.Sprintf("%q is in the kubernetes.io domain, which is reserved; use the device plugin's name, e.g. github.com/fuse", r)
	}
	return ""
}
