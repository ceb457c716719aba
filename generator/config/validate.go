// Validation: every field checked, all problems reported at once.

package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

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
		if a.Resources != nil {
			errs = append(errs, validateResources(p+".resources", *a.Resources, c.BuildResources(a))...)
		}
	}

	checkImage := func(path, ref string) {
		if msg := PinnedImageProblem(ref); msg != "" {
			add(path, "%s", msg)
		}
	}
	checkImage("images.gitSync", c.Images.GitSync)
	checkImage("images.buildah", c.Images.Buildah)
	checkImage("images.syft", c.Images.Syft)
	checkImage("images.crane", c.Images.Crane)
	checkImage("images.kubectl", c.Images.Kubectl)
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
	if c.Build.Retries < 0 || c.Build.Retries > 5 {
		add("build.retries", "%d is out of range; use 0 to 5 (each retry of a broken build costs another build's time)", c.Build.Retries)
	}
	errs = append(errs, validateResources("build.resources", c.Build.Resources, c.Build.Resources)...)

	if msgs := validation.IsDNS1123Subdomain(c.AppArmor.Profile); len(msgs) > 0 {
		add("apparmor.profile", "%q is not a usable profile name: %s (the security-profiles-operator names an object after it)", c.AppArmor.Profile, strings.Join(msgs, "; "))
	}
	switch c.AppArmor.Mode {
	case AppArmorField, AppArmorAnnotation, AppArmorNone:
	default:
		add("apparmor.mode", "%q is not a mode; use field (Kubernetes >= 1.30), annotation (older clusters) or none (nodes without AppArmor)", c.AppArmor.Mode)
	}
	errs = append(errs, c.validateAppArmorArchitectures()...)
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
	errs = append(errs, validatePullRequests("triggers.pullRequests", c.Triggers.PullRequests)...)
	errs = append(errs, validatePrune(c.Prune)...)
	errs = append(errs, validateNodeLoss(c.NodeLoss)...)
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
	errs = append(errs, c.References.validate()...)
	errs = append(errs, c.ArtifactHub.validate()...)
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

// buildResourceNames are the resources a build step may ask for here; the
// fuse device is the generator's to add (build.fuseResource).
var buildResourceNames = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}

// validateResources checks r, given at path, and merged, what the build
// step gets with it (for an architecture, its resources over build.resources):
// known names, positive quantities, no request above its limit.
func validateResources(path string, r, merged corev1.ResourceRequirements) []FieldError {
	var errs []FieldError
	add := func(p, format string, args ...any) {
		errs = append(errs, FieldError{Path: p, Message: fmt.Sprintf(format, args...)})
	}
	if len(r.Claims) > 0 {
		add(path+".claims", "not supported; remove it (the build step asks for cpu, memory and ephemeral-storage only)")
	}
	names := make([]string, len(buildResourceNames))
	for i, n := range buildResourceNames {
		names[i] = string(n)
	}
	for _, kind := range []struct {
		name string
		list corev1.ResourceList
	}{{"requests", r.Requests}, {"limits", r.Limits}} {
		for k, q := range kind.list {
			p := path + "." + kind.name + "." + string(k)
			if !slices.Contains(buildResourceNames, k) {
				add(p, "not a resource the build step asks for; use %s (the fuse device comes from build.storage)", strings.Join(names, ", "))
				continue
			}
			if q.Sign() <= 0 {
				add(p, "%s must be more than zero; leave the key out for no %s", q.String(), strings.TrimSuffix(kind.name, "s"))
			}
		}
	}
	for k, req := range merged.Requests {
		if lim, ok := merged.Limits[k]; ok && req.Cmp(lim) > 0 {
			add(path+".requests."+string(k), "%s is above the limit %s; a pod cannot request more than its limit: lower the request or raise limits.%s", req.String(), lim.String(), k)
		}
	}
	return errs
}

// validateAppArmorArchitectures checks apparmor.architectures against the
// configured architectures and the mode.
func (c *Config) validateAppArmorArchitectures() []FieldError {
	var errs []FieldError
	ids := make([]string, 0, len(c.Architectures))
	for _, a := range c.Architectures {
		ids = append(ids, a.ID())
	}
	keys := make([]string, 0, len(c.AppArmor.Architectures))
	for k := range c.AppArmor.Architectures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, p := c.AppArmor.Architectures[k], "apparmor.architectures."+k
		switch {
		case !slices.Contains(ids, k):
			errs = append(errs, FieldError{Path: p, Message: fmt.Sprintf("%q is not a configured architecture (architectures lists %s; an arm variant is written arm-v7); remove the entry or add the architecture", k, strings.Join(ids, ", "))})
		case !slices.Contains(AppArmorSettings, v):
			errs = append(errs, FieldError{Path: p, Message: fmt.Sprintf("%q is not a setting; use localhost (the profile apparmor.profile, which the node-profile loader loads), "+
				"runtime-default (the container runtime's profile: it denies mount, so builds with RUN steps fail) or none (nodes whose kernel has no AppArmor)", v)})
		case c.AppArmor.Mode == AppArmorNone && v != AppArmorNone:
			errs = append(errs, FieldError{Path: p, Message: fmt.Sprintf("%s asks for a profile, but apparmor.mode none asks for none anywhere; set apparmor.mode: field (Kubernetes >= 1.30) and list the architectures without AppArmor here as none", v)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if _, uniform := c.AppArmorUniform(); !uniform && c.AppArmor.Mode == AppArmorAnnotation {
		errs = append(errs, FieldError{Path: "apparmor.mode", Message: "annotation names one profile for every pod of a Task, but apparmor.architectures gives the architectures different ones; " +
			"use field (Kubernetes >= 1.30: each run's pod template names its architecture's), or the same setting for every architecture"})
	}
	return errs
}
