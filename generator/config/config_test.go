package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestDefault(t *testing.T) {
	c := Default()
	var got []string
	for _, a := range c.Architectures {
		got = append(got, a.Platform())
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, got); diff != "" {
		t.Errorf("default platforms (-want +got):\n%s", diff)
	}
	if c.AppArmor.Mode != AppArmorField || c.Build.Storage != StorageAuto || c.Build.NeedsFuse() || c.Build.FuseResource != "github.com/fuse" || c.Build.Cache {
		t.Errorf("unexpected defaults: %+v", c)
	}
	if want := (Seccomp{Profile: "tekton-multiarch/buildah.json", KubeletDir: "/var/lib/kubelet/seccomp"}); c.Seccomp != want {
		t.Errorf("seccomp = %+v, want %+v", c.Seccomp, want)
	}
}

// Good values of the new fields are accepted as given.
func TestSeccompAndAppArmorNoneAccepted(t *testing.T) {
	for _, tc := range []struct{ yaml, profile, dir, mode string }{
		{"apparmor: {mode: none}", "tekton-multiarch/buildah.json", "/var/lib/kubelet/seccomp", AppArmorNone},
		{"seccomp: {profile: buildah.json}", "buildah.json", "/var/lib/kubelet/seccomp", AppArmorField},
		{"seccomp: {profile: team-a/builds/buildah-1.40.json, kubeletDir: /var/lib/k0s/kubelet/seccomp}", "team-a/builds/buildah-1.40.json", "/var/lib/k0s/kubelet/seccomp", AppArmorField},
	} {
		c, err := Parse([]byte(tc.yaml), "ok.yaml")
		if err != nil {
			t.Errorf("%s: %v", tc.yaml, err)
			continue
		}
		if c.Seccomp.Profile != tc.profile || c.Seccomp.KubeletDir != tc.dir || c.AppArmor.Mode != tc.mode {
			t.Errorf("%s: seccomp %+v, apparmor.mode %q", tc.yaml, c.Seccomp, c.AppArmor.Mode)
		}
		if got, want := c.LoadsAppArmorProfile(), tc.mode != AppArmorNone; got != want {
			t.Errorf("%s: LoadsAppArmorProfile() = %v, want %v", tc.yaml, got, want)
		}
	}
}

// Every storage mode is accepted; only fuse-overlayfs needs the fuse device
// plugin (auto falls back to vfs in a pod without /dev/fuse).
func TestStorageModes(t *testing.T) {
	for _, tc := range []struct {
		mode string
		fuse bool
	}{
		{StorageAuto, false},
		{StorageOverlay, false},
		{StorageFuseOverlayfs, true},
		{StorageVFS, false},
	} {
		c, err := Parse([]byte("build: {storage: "+tc.mode+"}"), "ok.yaml")
		if err != nil {
			t.Errorf("storage %s: %v", tc.mode, err)
			continue
		}
		if c.Build.Storage != tc.mode || c.Build.NeedsFuse() != tc.fuse {
			t.Errorf("storage %s: got %q, NeedsFuse %v, want %v", tc.mode, c.Build.Storage, c.Build.NeedsFuse(), tc.fuse)
		}
	}
}

func TestParseOverridesOnlyWhatIsGiven(t *testing.T) {
	c, err := Parse([]byte(`
architectures:
  - name: arm
    variant: v7
    nodeSelector: {example.com/board: rpi4}
apparmor: {mode: annotation}
`), "my.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Architectures) != 1 || c.Architectures[0].Platform() != "linux/arm/v7" || c.Architectures[0].ID() != "arm-v7" {
		t.Errorf("architectures not replaced whole: %+v", c.Architectures)
	}
	if c.AppArmor.Mode != AppArmorAnnotation || c.AppArmor.Profile != Default().AppArmor.Profile {
		t.Errorf("apparmor = %+v, want mode overridden and profile kept", c.AppArmor)
	}
	if c.Images != Default().Images {
		t.Errorf("images changed though not given: %+v", c.Images)
	}
	c, err = Parse([]byte("build: {cache: true}"), "my.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := Default().Build; !c.Build.Cache || c.Build.Storage != want.Storage || c.Build.PushRetries != want.PushRetries {
		t.Errorf("build = %+v, want cache on and the rest of the default %+v", c.Build, want)
	}
}

// Each bad configuration must be refused with a message naming the field and the fix.
func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		field      string
		want       string
	}{
		{"unknown top-level field", "catalogue: {}", "catalogue", "unknown field"},
		{"unknown nested field", "build: {storagemode: vfs}", "build.storagemode", "unknown field"},
		{"duplicate field", "build: {storage: vfs, storage: overlay}", "(file)", "already set"},
		{"wrong type", "build: {pushRetries: many}", "build.pushRetries", "wrong type"},
		{"unknown arch", "architectures: [{name: arm65}]", "architectures[0].name", "allowed (Go's names): 386, amd64, arm, arm64"},
		{"uname spelling", "architectures: [{name: x86_64}]", "architectures[0].name", "not a known architecture"},
		{"duplicate arch", "architectures: [{name: amd64}, {name: arm64}, {name: amd64}]", "architectures[2]", "duplicate of architectures[0]"},
		{"no arches", "architectures: []", "architectures", "list at least one"},
		{"arm without variant", "architectures: [{name: arm}]", "architectures[0].variant", "required for arm"},
		{"bad variant", "architectures: [{name: arm, variant: v9}]", "architectures[0].variant", "allowed: v6, v7"},
		{"variant on amd64", "architectures: [{name: amd64, variant: v2}]", "architectures[0].variant", "has no variants"},
		{"arch label override", "architectures: [{name: amd64, nodeSelector: {kubernetes.io/arch: arm64}}]", "architectures[0].nodeSelector[kubernetes.io/arch]", "set by the generator"},
		{"bad label", "architectures: [{name: amd64, nodeSelector: {'bad key!': x}}]", "architectures[0].nodeSelector[bad key!]", "bad label key"},
		{"bad toleration", "architectures: [{name: amd64, tolerations: [{key: a, operator: Maybe}]}]", "architectures[0].tolerations[0].operator", "use Equal or Exists"},
		{"unknown triggers pipeline", "triggers: {pipeline: multiarch-matrix}", "triggers.pipeline", "not a Pipeline of this catalog; use multiarch-build"},
		{"empty image", "images: {buildah: ''}", "images.buildah", "empty"},
		{"latest image", "images: {buildah: quay.io/buildah/stable:latest}", "images.buildah", "floating tag"},
		{"untagged image", "images: {gitSync: registry.k8s.io/git-sync/git-sync}", "images.gitSync", "no tag or digest"},
		{"bad image", "images: {buildah: 'Quay.io/UPPER CASE:1'}", "images.buildah", "not a valid image reference"},
		{"bad resource", "build: {fuseResource: 'fuse device'}", "build.fuseResource", "not a resource name"},
		{"resource without domain", "build: {fuseResource: fuse}", "build.fuseResource", "has no domain"},
		{"reserved resource", "build: {fuseResource: kubernetes.io/fuse}", "build.fuseResource", "reserved"},
		{"apparmor setting", "apparmor: {architectures: {arm64: unconfined}}", "apparmor.architectures.arm64", `"unconfined" is not a setting; use localhost`},
		{"apparmor arch not configured", "apparmor: {architectures: {s390x: none}}", "apparmor.architectures.s390x", `"s390x" is not a configured architecture (architectures lists amd64, arm64`},
		{"apparmor arm spelling", "architectures: [{name: arm, variant: v7}]\napparmor: {architectures: {arm/v7: none}}", "apparmor.architectures.arm/v7", "an arm variant is written arm-v7"},
		{"apparmor profile in mode none", "apparmor: {mode: none, architectures: {amd64: localhost}}", "apparmor.architectures.amd64", "apparmor.mode none asks for none anywhere; set apparmor.mode: field"},
		{"apparmor per arch by annotation", "apparmor: {mode: annotation, architectures: {arm64: none}}", "apparmor.mode", "annotation names one profile for every pod of a Task"},
		{"storage mode", "build: {storage: btrfs}", "build.storage", `"btrfs" is not a storage mode; use auto (the kernel's overlay where it can serve, else fuse-overlayfs where /dev/fuse is, else vfs), overlay (the kernel's overlay: Linux >= 5.11, buildah >= 1.35), fuse-overlayfs (needs the fuse device plugin) or vfs`},
		{"storage as the driver's name", "build: {storage: fuse}", "build.storage", "fuse-overlayfs (needs the fuse device plugin)"},
		// The old field's overlay was fuse-overlayfs: the message names what to write.
		{"old storageDriver overlay", "build: {storageDriver: overlay}", "build.storageDriver", "renamed to build.storage, whose overlay is now the kernel's own: for what storageDriver: overlay did (fuse-overlayfs, needs the fuse device plugin) write storage: fuse-overlayfs; or storage: auto"},
		{"old storageDriver vfs", "build: {storageDriver: vfs}", "build.storageDriver", "renamed to build.storage; write storage: vfs"},
		{"old storageDriver other", "build: {storageDriver: btrfs}", "build.storageDriver", "renamed to build.storage; use auto, overlay (the kernel's), fuse-overlayfs or vfs"},
		{"medium", "build: {emptyDirMedium: HugePages}", "build.emptyDirMedium", "Memory"},
		{"retries", "build: {pushRetries: 99}", "build.pushRetries", "0 to 10"},
		{"task retries", "build: {retries: 9}", "build.retries", "use 0 to 5"},
		{"canceller name", "triggers: {pullRequests: {cancelServiceAccount: 'Bad Name'}}", "triggers.pullRequests.cancelServiceAccount", "is not a ServiceAccount name"},
		{"kubectl image", "images: {kubectl: registry.k8s.io/kubectl:latest}", "images.kubectl", "floating tag"},
		{"prune schedule", "prune: {schedule: 'every hour'}", "prune.schedule", "is not a CronJob schedule"},
		{"prune keep", "prune: {keepFailed: -1}", "prune.keepFailed", "use 0 to 1000"},
		{"pruner name", "prune: {serviceAccount: ''}", "prune.serviceAccount", "is not a ServiceAccount name"},
		{"node loss after unit", "nodeLoss: {after: '120'}", "nodeLoss.after", "is not a duration of whole seconds from 30s to 1h"},
		{"node loss after short", "nodeLoss: {after: 10s}", "nodeLoss.after", "would fail pods on a short network blip"},
		{"node loss after long", "nodeLoss: {after: 2h}", "nodeLoss.after", "from 30s to 1h"},
		{"node loss after fraction", "nodeLoss: {after: 90.5s}", "nodeLoss.after", "whole seconds"},
		{"node loss name", "nodeLoss: {serviceAccount: Watcher}", "nodeLoss.serviceAccount", "is not a ServiceAccount name"},
		{"negative task retries", "build: {retries: -1}", "build.retries", "use 0 to 5"},
		{"resource name", "build: {resources: {limits: {nvidia.com/gpu: 1}}}", "build.resources.limits.nvidia.com/gpu", "use cpu, memory, ephemeral-storage"},
		{"zero limit", "build: {resources: {limits: {memory: 0}}}", "build.resources.limits.memory", "more than zero; leave the key out for no limit"},
		{"bad quantity", "build: {resources: {limits: {memory: lots}}}", "(file)", "quantities must match"},
		{"request over limit", "build: {resources: {requests: {memory: 8Gi}}}", "build.resources.requests.memory", "8Gi is above the limit 4Gi"},
		// An architecture's limit under the default request, key by key.
		{"arch limit under the request", "architectures: [{name: arm, variant: v7, resources: {limits: {memory: 256Mi}}}]", "architectures[0].resources.requests.memory", "512Mi is above the limit 256Mi"},
		{"arch claims", "architectures: [{name: arm64, resources: {claims: [{name: x}]}}]", "architectures[0].resources.claims", "not supported"},
		{"cache as a string", `build: {cache: "true"}`, "build.cache", "wrong type: got string, want bool"},
		{"cache as a number", "build: {cache: 1}", "build.cache", "wrong type: got number, want bool"},
		{"cache misspelt", "build: {layerCache: true}", "build.layerCache", "unknown field"},
		{"profile", "apparmor: {profile: 'my profile'}", "apparmor.profile", "not a usable profile name"},
		{"mode", "apparmor: {mode: seccomp}", "apparmor.mode", "use field (Kubernetes >= 1.30), annotation (older clusters) or none (nodes without AppArmor)"},
		{"mode disabled", "apparmor: {mode: disabled}", "apparmor.mode", "or none (nodes without AppArmor)"},
		{"seccomp profile empty", "seccomp: {profile: ''}", "seccomp.profile", "empty; give the profile's path under the kubelet's seccomp directory"},
		{"seccomp profile absolute", "seccomp: {profile: /var/lib/kubelet/seccomp/buildah.json}", "seccomp.profile", "is absolute; give a path relative to the kubelet's seccomp directory (seccomp.kubeletDir)"},
		{"seccomp profile leaves the directory", "seccomp: {profile: ../buildah.json}", "seccomp.profile", "leaves the kubelet's seccomp directory; remove the '..'"},
		{"seccomp profile leaves it midway", "seccomp: {profile: a/../../buildah.json}", "seccomp.profile", "remove the '..'"},
		{"seccomp profile with a space", "seccomp: {profile: 'my profile.json'}", "seccomp.profile", "may only hold letters, digits"},
		{"seccomp profile unclean", "seccomp: {profile: ./a//buildah.json}", "seccomp.profile", `not a clean path; write it as "a/buildah.json"`},
		{"seccomp profile a directory", "seccomp: {profile: tekton-multiarch/}", "seccomp.profile", `write it as "tekton-multiarch"`},
		{"seccomp profile not json", "seccomp: {profile: tekton-multiarch/buildah}", "seccomp.profile", "does not name a .json file"},
		{"seccomp profile only an extension", "seccomp: {profile: a/.json}", "seccomp.profile", "does not name a .json file"},
		{"seccomp dir relative", "seccomp: {kubeletDir: var/lib/kubelet/seccomp}", "seccomp.kubeletDir", "is relative; give the absolute path on the nodes"},
		{"seccomp dir empty", "seccomp: {kubeletDir: ''}", "seccomp.kubeletDir", "empty; give the kubelet's seccomp directory"},
		{"seccomp dir with ..", "seccomp: {kubeletDir: /var/lib/kubelet/../seccomp}", "seccomp.kubeletDir", "has a '..'"},
		{"seccomp dir root", "seccomp: {kubeletDir: /}", "seccomp.kubeletDir", "is the node's root"},
		{"seccomp dir unclean", "seccomp: {kubeletDir: /var/lib/kubelet/seccomp/}", "seccomp.kubeletDir", `write it as "/var/lib/kubelet/seccomp"`},
		{"seccomp misspelt", "seccomp: {localhostProfile: a.json}", "seccomp.localhostProfile", "unknown field"},
		{"old loader image field", "cluster: {apparmorLoaderImage: docker.io/library/busybox:1.36.1}", "cluster.apparmorLoaderImage", "renamed to cluster.nodeProfileLoaderImage; rename the field"},
		{"loader image", "cluster: {nodeProfileLoaderImage: docker.io/library/busybox}", "cluster.nodeProfileLoaderImage", "no tag or digest"},
		{"version", "catalog: {version: v1}", "catalog.version", "MAJOR.MINOR"},
		{"three-part version", "catalog: {version: 0.1.0}", "catalog.version", "MAJOR.MINOR"},
		{"namespace", "example: {namespace: My_NS}", "example.namespace", "RFC 1123"},
		{"example image digest", "example: {image: 'r.io/a@sha256:0000000000000000000000000000000000000000000000000000000000000000'}", "example.image", "has a digest"},
		{"example image no tag", "example: {image: r.io/a}", "example.image", "not an image reference with a tag"},
		{"empty git url", "example: {gitURL: ''}", "example.gitURL", "missing"},
		{"not yaml", "architectures: [", "(file)", "not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "bad.yaml")
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want a *config.Error", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "bad.yaml") {
				t.Errorf("message does not name the file: %s", msg)
			}
			if !strings.Contains(msg, "\n  "+tc.field+": ") {
				t.Errorf("message does not name field %q:\n%s", tc.field, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message lacks %q:\n%s", tc.want, msg)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("build: {storage: btrfs, pushRetries: -1}\napparmor: {mode: x}"), "bad.yaml")
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Fields) != 3 {
		t.Fatalf("want 3 field errors, got %v", err)
	}
}

func TestPinnedImageProblem(t *testing.T) {
	for ref, ok := range map[string]bool{
		"quay.io/buildah/stable:v1.40.1":                                             true,
		"registry.k8s.io/git-sync/git-sync:v4.4.0@sha256:" + strings.Repeat("a", 64): true,
		"quay.io/buildah/stable@sha256:" + strings.Repeat("b", 64):                   true,
		"quay.io/buildah/stable":                                                     false,
		"quay.io/buildah/stable:stable":                                              false,
		"quay.io/buildah/stable:latest":                                              false,
		"quay.io/buildah/stable:edge":                                                false,
		"":                                                                           false,
	} {
		if got := PinnedImageProblem(ref) == ""; got != ok {
			t.Errorf("PinnedImageProblem(%q) pinned=%v, want %v (%s)", ref, got, ok, PinnedImageProblem(ref))
		}
	}
}

// Per-architecture AppArmor: each architecture's setting, whether the Task
// steps can name it (uniform) or each run's pod template must, and whether
// the loader loads the profile.
func TestAppArmorPerArchitecture(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       map[string]string // setting per architecture ID
		uniform    bool
		loads      bool
		step       *corev1.AppArmorProfileType
		annotation string
	}{
		{name: "default", yaml: "{}", want: map[string]string{"amd64": AppArmorLocalhost, "arm64": AppArmorLocalhost},
			uniform: true, loads: true, step: ptr(corev1.AppArmorProfileTypeLocalhost)},
		{name: "mode none", yaml: "apparmor: {mode: none}", want: map[string]string{"amd64": AppArmorNone, "arm64": AppArmorNone}, uniform: true},
		{name: "seed's cluster", yaml: "apparmor: {architectures: {arm64: none}}", want: map[string]string{"amd64": AppArmorLocalhost, "arm64": AppArmorNone}, loads: true},
		{name: "every arch listed alike is uniform", yaml: "apparmor: {architectures: {amd64: none, arm64: none}}", want: map[string]string{"amd64": AppArmorNone, "arm64": AppArmorNone}, uniform: true},
		{name: "runtime default everywhere", yaml: "apparmor: {architectures: {amd64: runtime-default, arm64: runtime-default}}",
			want: map[string]string{"amd64": AppArmorRuntimeDefault, "arm64": AppArmorRuntimeDefault}, uniform: true, step: ptr(corev1.AppArmorProfileTypeRuntimeDefault)},
		{name: "annotation, uniform", yaml: "apparmor: {mode: annotation}", want: map[string]string{"amd64": AppArmorLocalhost, "arm64": AppArmorLocalhost},
			uniform: true, loads: true, annotation: "localhost/containerized-buildah"},
		{name: "annotation, runtime default", yaml: "apparmor: {mode: annotation, architectures: {amd64: runtime-default, arm64: runtime-default}}",
			want: map[string]string{"amd64": AppArmorRuntimeDefault, "arm64": AppArmorRuntimeDefault}, uniform: true, annotation: "runtime/default"},
		{name: "mode none, every arch none", yaml: "apparmor: {mode: none, architectures: {arm64: none}}", want: map[string]string{"amd64": AppArmorNone, "arm64": AppArmorNone}, uniform: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "ok.yaml")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range c.Architectures {
				if got := c.AppArmorFor(a); got != tc.want[a.ID()] {
					t.Errorf("AppArmorFor(%s) = %q, want %q", a.ID(), got, tc.want[a.ID()])
				}
				pod := c.PodAppArmor(a)
				if tc.uniform && pod != nil {
					t.Errorf("PodAppArmor(%s) = %+v in a uniform configuration", a.ID(), pod)
				}
				if !tc.uniform && (pod == nil) != (tc.want[a.ID()] == AppArmorNone) {
					t.Errorf("PodAppArmor(%s) = %+v for setting %s", a.ID(), pod, tc.want[a.ID()])
				}
			}
			if _, uniform := c.AppArmorUniform(); uniform != tc.uniform {
				t.Errorf("AppArmorUniform() = %v, want %v", uniform, tc.uniform)
			}
			if got := c.LoadsAppArmorProfile(); got != tc.loads {
				t.Errorf("LoadsAppArmorProfile() = %v, want %v", got, tc.loads)
			}
			step := c.StepAppArmor()
			if (step == nil) != (tc.step == nil) || step != nil && step.Type != *tc.step {
				t.Errorf("StepAppArmor() = %+v, want type %v", step, tc.step)
			}
			if got := c.AppArmorAnnotationValue(); got != tc.annotation {
				t.Errorf("AppArmorAnnotationValue() = %q, want %q", got, tc.annotation)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
