package catalog

import (
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	admissionv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/cluster"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/render"
)

// ClusterObjects are the cluster prerequisites under examples/cluster/.
type ClusterObjects struct {
	// The fuse device plugin; nil unless build.storage is fuse-overlayfs,
	// the only mode that needs /dev/fuse.
	FusePlugin *appsv1.DaemonSet
	// The build steps' seccomp profile, and the file the kubelet reads.
	SeccompProfile *specs.LinuxSeccomp
	Seccomp        []byte
	// The AppArmor profile text and its security-profiles-operator object;
	// "" and nil in apparmor.mode none.
	Profile           string
	OperatorProfile   *cluster.AppArmorProfile
	LoaderConfig      *corev1.ConfigMap
	Loader            *appsv1.DaemonSet
	Identity          cluster.Identity
	ArchPolicy        *admissionv1beta1.MutatingAdmissionPolicy
	ArchPolicyBinding *admissionv1beta1.MutatingAdmissionPolicyBinding
	// The user-namespace policy; nil unless build.userNamespaces.
	UsernsPolicy        *admissionv1beta1.MutatingAdmissionPolicy
	UsernsPolicyBinding *admissionv1beta1.MutatingAdmissionPolicyBinding
	// The pruner of finished runs; nil unless prune.enabled.
	Pruner *cluster.Pruner
	// The watcher that fails pods on lost nodes; nil unless nodeLoss.enabled.
	NodeLoss *cluster.NodeLossWatcher
}

func newClusterObjects(cfg *config.Config) (ClusterObjects, error) {
	var c ClusterObjects
	var err error
	if cfg.Build.NeedsFuse() {
		if c.FusePlugin, err = cluster.FuseDevicePlugin(cfg); err != nil {
			return c, err
		}
	}
	if c.SeccompProfile, err = cluster.BuildSeccomp(cfg); err != nil {
		return c, err
	}
	if c.Seccomp, err = cluster.SeccompJSON(c.SeccompProfile); err != nil {
		return c, err
	}
	if cfg.LoadsAppArmorProfile() {
		if c.Profile, err = cluster.Profile(cfg.AppArmor.Profile); err != nil {
			return c, err
		}
		c.OperatorProfile = cluster.OperatorProfile(cfg, c.Profile)
	}
	c.LoaderConfig, c.Loader = cluster.Loader(cfg, c.Seccomp, c.Profile)
	c.Identity = cluster.NewIdentity(cfg)
	c.Pruner = cluster.NewPruner(cfg)
	c.NodeLoss = cluster.NewNodeLossWatcher(cfg)
	c.ArchPolicy, c.ArchPolicyBinding = cluster.ArchPolicy(cfg)
	c.UsernsPolicy, c.UsernsPolicyBinding = cluster.UsernsPolicy(cfg)
	return c, nil
}

// SeccompFile is where the seccomp profile is generated: named as the
// kubelet's directory names it, without its subdirectories.
func SeccompFile(cfg *config.Config) string {
	return "examples/cluster/seccomp/" + path.Base(cfg.Seccomp.Profile)
}

// FusePluginFile is the fuse device plugin's manifest, generated only for
// build.storage: fuse-overlayfs.
const FusePluginFile = "examples/cluster/fuse-device-plugin.yaml"

// PruneFile is the pruner of finished runs (prune.enabled).
const PruneFile = "examples/cluster/prune.yaml"

// NodeLossFile is the watcher that fails pods on lost nodes (nodeLoss.enabled).
const NodeLossFile = "examples/cluster/node-loss.yaml"

// ArchPolicyFile holds the arch-pinning admission policy and its binding.
const ArchPolicyFile = "examples/cluster/arch-pinning.yaml"

// UsernsPolicyFile holds the user-namespace admission policy and its
// binding, generated only with build.userNamespaces.
const UsernsPolicyFile = "examples/cluster/user-namespaces.yaml"

// LoaderFile is the node-profile loader's manifest.
const LoaderFile = "examples/cluster/node-profiles/node-profile-loader.yaml"

// ChainsConfigFile is Tekton Chains' configuration for this catalog.
const ChainsConfigFile = "examples/cluster/chains/chains-config.yaml"

// chainsWhy says why each chains-config setting has its value.
var chainsWhy = map[string]string{
	"artifacts.taskrun.format":                     "SLSA v0.2 provenance of each TaskRun (`cosign verify-attestation --type slsaprovenance`)",
	"artifacts.taskrun.storage":                    "the TaskRun's provenance goes to the registry, beside the image",
	"artifacts.oci.storage":                        "the images' signatures go to the registry (`repo:sha256-<digest>.sig`)",
	"artifacts.pipelinerun.format":                 "SLSA v0.2 provenance of the PipelineRun too",
	"artifacts.pipelinerun.storage":                "stored beside the images as well",
	"artifacts.pipelinerun.enable-deep-inspection": "the PipelineRun's provenance covers its TaskRuns' images and records their results",
	"transparency.enabled":                         "no public transparency log (rekor); verify with `--insecure-ignore-tlog=true`, or turn it on where a rekor is reachable",
}

// addCluster renders the cluster prerequisites under examples/cluster/.
func addCluster(files render.Files, cfg *config.Config, o Objects) error {
	multi := func(p, note string, objs ...any) error { return multiDoc(files, p, note, objs...) }
	c := o.Cluster
	id := c.Identity
	var identity []any
	if id.Namespace != nil {
		identity = append(identity, id.Namespace)
	}
	if id.ServiceAccount != nil {
		identity = append(identity, id.ServiceAccount)
	}
	identity = append(identity, id.StarterRole, id.PolicyReader)
	if err := multi("examples/cluster/build-identity.yaml",
		"# Where builds run: kubectl apply -f examples/cluster/build-identity.yaml\n"+
			"# Let someone start builds: kubectl -n "+cfg.Example.Namespace+" create rolebinding alice-starts-builds --role="+cluster.StarterRole+" --user=alice\n"+
			"# and see the arch-pinning policy: kubectl create clusterrolebinding alice-sees-arch-policy --clusterrole="+cluster.PolicyReaderRole+" --user=alice\n",
		identity...); err != nil {
		return err
	}
	if id.RegistrySecret != nil {
		if err := multi("examples/cluster/registry-credentials.yaml.example",
			"# The shape of the registry Secret the dockerconfig workspace takes. Don't fill\n"+
				"# this in; create the Secret from your credentials instead:\n"+
				"#   kubectl -n "+cfg.Example.Namespace+" create secret docker-registry "+cfg.Example.RegistrySecret+" \\\n"+
				"#     --docker-server="+cluster.RegistryHost(cfg.Example.Image)+" --docker-username=USER --docker-password=TOKEN\n"+
				"# (.example: kubectl apply -f examples/cluster/ skips this file.)\n",
			id.RegistrySecret); err != nil {
			return err
		}
	}
	if p := c.Pruner; p != nil {
		if err := multi(PruneFile,
			"# Deletes finished runs of "+strings.Join(cluster.Pipelines, " and ")+" in "+cfg.Example.Namespace+" ("+cfg.Prune.Schedule+"), keeping per\n"+
				"# Pipeline and pull request the last "+fmt.Sprint(cfg.Prune.KeepSucceeded)+" that succeeded and "+fmt.Sprint(cfg.Prune.KeepFailed)+" that failed:\n"+
				"#   kubectl apply -f "+PruneFile+"\n"+
				"# Its ServiceAccount may list and delete only finished runs of those Pipelines\n"+
				"# there (the Role and the ValidatingAdmissionPolicy: Kubernetes >= 1.30).\n",
			p.ServiceAccount, p.Role, p.RoleBinding, p.Policy, p.PolicyBinding, p.CronJob); err != nil {
			return err
		}
	}
	if w := c.NodeLoss; w != nil {
		if err := multi(NodeLossFile,
			"# Every minute, fails the pods of "+strings.Join(cluster.Pipelines, " and ")+" runs in "+cfg.Example.Namespace+" that sit on a node\n"+
				"# Ready=Unknown for "+cfg.NodeLoss.After+" or more (lost: powered off, off the network), so that their\n"+
				"# TaskRuns fail naming the node, or are retried, instead of waiting for the run's timeout:\n"+
				"#   kubectl apply -f "+NodeLossFile+"\n"+
				"# Its ServiceAccount may get the nodes those pods are on, and only mark pods of\n"+
				"# those Pipelines that have not finished Failed for "+cluster.NodeLossReason+" (the Roles and the\n"+
				"# ValidatingAdmissionPolicy: Kubernetes >= 1.30).\n",
			w.ServiceAccount, w.ClusterRole, w.ClusterRoleBinding, w.Role, w.RoleBinding, w.Policy, w.PolicyBinding, w.CronJob); err != nil {
			return err
		}
	}
	if c.FusePlugin != nil {
		if err := multi(FusePluginFile,
			"# /dev/fuse as the extended resource "+cfg.Build.FuseResource+" on every node, for build.storage: fuse-overlayfs:\n"+
				"#   kubectl apply -f "+FusePluginFile+"\n",
			c.FusePlugin); err != nil {
			return err
		}
	}
	if err := multi(ArchPolicyFile,
		"# Pins every pod of the build Task to a node of the platform it builds, whoever\n"+
			"# started the run (tkn pipeline start, the Dashboard, kubectl create without\n"+
			"# taskRunSpecs): kubectl apply -f "+ArchPolicyFile+"\n"+
			"# Kubernetes 1.34/1.35: the API server needs --feature-gates=MutatingAdmissionPolicy=true\n"+
			"# --runtime-config=admissionregistration.k8s.io/v1beta1=true. See examples/cluster/README.md.\n",
		c.ArchPolicy, c.ArchPolicyBinding); err != nil {
		return err
	}
	if c.UsernsPolicy != nil {
		if err := multi(UsernsPolicyFile,
			"# Gives every pod of this catalog's Tasks spec.hostUsers: false (build.userNamespaces),\n"+
				"# however the run was started: kubectl apply -f "+UsernsPolicyFile+"\n"+
				"# Nodes need "+config.UserNamespacesRequirements+".\n"+
				"# Kubernetes 1.34/1.35: the API server needs the MutatingAdmissionPolicy feature, as for arch-pinning.yaml.\n",
			c.UsernsPolicy, c.UsernsPolicyBinding); err != nil {
			return err
		}
	}
	files[SeccompFile(cfg)] = c.Seccomp
	loaderNote := "# Install the seccomp profile " + cfg.Seccomp.Profile + " on every node"
	access := "the kubelet's seccomp directory " + cfg.Seccomp.KubeletDir + ", no capability"
	if cfg.LoadsAppArmorProfile() {
		loaderNote += ", and load the AppArmor profile " + cfg.AppArmor.Profile
		access = "the kubelet's seccomp directory, CAP_MAC_ADMIN, CAP_SYS_CHROOT, the node's root read-only"
	}
	if err := multi(LoaderFile,
		loaderNote+":\n"+
			"#   kubectl apply -f "+path.Dir(LoaderFile)+"/\n"+
			"# Its init container is the only container of this project with host access\n"+
			"# ("+access+"): see examples/cluster/README.md.\n",
		c.LoaderConfig, c.Loader); err != nil {
		return err
	}
	if cfg.LoadsAppArmorProfile() {
		files["examples/cluster/apparmor/"+cfg.AppArmor.Profile] = []byte(c.Profile)
		if err := multi("examples/cluster/apparmor/security-profiles-operator/apparmorprofile.yaml",
			"# The same profile through the security-profiles-operator, releases up to v0.8.4 only (later\n"+
				"# ones dropped spec.policy and cannot express mount), with AppArmor enabled in it; see\n"+
				"# examples/cluster/README.md. kubectl apply -f examples/cluster/apparmor/security-profiles-operator/\n",
			c.OperatorProfile); err != nil {
			return err
		}
	}
	r, err := readme("cluster", cfg, o, nil)
	if err != nil {
		return err
	}
	files["examples/cluster/README.md"] = r
	if err := multi(ChainsConfigFile,
		"# Tekton Chains (v0.20 or later) signing and attesting this catalog's images:\n"+
			"#   kubectl apply -f "+ChainsConfigFile+"\n"+
			"# then make the signing Secret: cosign generate-key-pair k8s://"+cluster.ChainsNamespace+"/signing-secrets\n"+
			"# See examples/cluster/chains/README.md.\n",
		cluster.ChainsConfig()); err != nil {
		return err
	}
	if files["examples/cluster/chains/README.md"], err = readme("chains", cfg, o, nil); err != nil {
		return err
	}

	return nil
}
