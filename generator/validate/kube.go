package validate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggerscontexts "github.com/tektoncd/triggers/pkg/apis/triggers/contexts"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	admissionv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/tekton-multiarch/tekton-multiarch/generator/cluster"
)

// KubeObject is one decoded Kubernetes object of the examples/cluster/ tree.
type KubeObject struct {
	Source string
	Object any // *appsv1.DaemonSet, *corev1.Namespace, ...
}

// DecodeKubernetes strictly decodes every document of data into its
// k8s.io/api type (or, for the security-profiles-operator's AppArmorProfile,
// the fields this project writes).
func DecodeKubernetes(source string, data []byte) ([]KubeObject, error) {
	var out []KubeObject
	for i, doc := range docSeparator.Split(string(data), -1) {
		if len(strings.TrimSpace(string(stripComments([]byte(doc))))) == 0 {
			continue
		}
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i+1, err)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			obj = &corev1.Namespace{}
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1 Secret":
			obj = &corev1.Secret{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "apps/v1 DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "rbac.authorization.k8s.io/v1 Role":
			obj = &rbacv1.Role{}
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1 RoleBinding":
			obj = &rbacv1.RoleBinding{}
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case cluster.ArchPolicyAPIVersion + " MutatingAdmissionPolicy":
			obj = &admissionv1beta1.MutatingAdmissionPolicy{}
		case cluster.ArchPolicyAPIVersion + " MutatingAdmissionPolicyBinding":
			obj = &admissionv1beta1.MutatingAdmissionPolicyBinding{}
		case "networking.k8s.io/v1 Ingress":
			obj = &networkingv1.Ingress{}
		case triggersv1.SchemeGroupVersion.String() + " EventListener":
			obj = &triggersv1.EventListener{}
		case triggersv1.SchemeGroupVersion.String() + " TriggerBinding":
			obj = &triggersv1.TriggerBinding{}
		case triggersv1.SchemeGroupVersion.String() + " TriggerTemplate":
			obj = &triggersv1.TriggerTemplate{}
		case "batch/v1 CronJob":
			obj = &batchv1.CronJob{}
		case "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy":
			obj = &admissionv1.ValidatingAdmissionPolicy{}
		case "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding":
			obj = &admissionv1.ValidatingAdmissionPolicyBinding{}
		case cluster.SPOAPIVersion + " AppArmorProfile":
			obj = &cluster.AppArmorProfile{}
		default:
			return nil, fmt.Errorf("%s: document %d: %s %s is not a kind this project generates", source, i+1, head.APIVersion, head.Kind)
		}
		if err := decodeStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", source, i+1, head.Kind, err)
		}
		out = append(out, KubeObject{Source: source, Object: obj})
	}
	return out, nil
}

// CheckKubernetes runs, on each object, the validation apimachinery offers
// offline (object metadata, names, labels, selectors) plus the structural
// rules the API server would apply to what this project generates: a
// DaemonSet's selector matches its template, containers have unique DNS-label
// names and images, mounts name declared volumes, env names are valid,
// requests do not exceed limits.
func CheckKubernetes(objs []KubeObject) error {
	var errs field.ErrorList
	policies := map[string]bool{}
	for _, o := range objs {
		switch p := o.Object.(type) {
		case *admissionv1beta1.MutatingAdmissionPolicy:
			policies[p.Name] = true
		case *admissionv1.ValidatingAdmissionPolicy:
			policies[p.Name] = true
		}
	}
	for _, o := range objs {
		switch t := o.Object.(type) {
		case *corev1.Namespace:
			errs = append(errs, meta(&t.ObjectMeta, false, apivalidation.ValidateNamespaceName)...)
		case *corev1.ServiceAccount:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
		case *corev1.Secret:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			if t.Type == corev1.SecretTypeDockerConfigJson && t.StringData[corev1.DockerConfigJsonKey] == "" && len(t.Data[corev1.DockerConfigJsonKey]) == 0 {
				errs = append(errs, field.Required(field.NewPath("stringData").Key(corev1.DockerConfigJsonKey), "a dockerconfigjson Secret needs it"))
			}
		case *corev1.ConfigMap:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			for k := range t.Data {
				for _, m := range validation.IsConfigMapKey(k) {
					errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, m))
				}
			}
		case *rbacv1.Role:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			for i, r := range t.Rules {
				if len(r.Verbs) == 0 || len(r.Resources) == 0 {
					errs = append(errs, field.Required(field.NewPath("rules").Index(i), "verbs and resources"))
				}
			}
		case *rbacv1.ClusterRole:
			errs = append(errs, meta(&t.ObjectMeta, false, apivalidation.NameIsDNSSubdomain)...)
			for i, r := range t.Rules {
				if len(r.Verbs) == 0 || len(r.Resources) == 0 {
					errs = append(errs, field.Required(field.NewPath("rules").Index(i), "verbs and resources"))
				}
				// A cluster-wide grant is only for reading the objects it
				// names, or a node whose name one knows (the node-loss
				// watcher, from its pods: nodes have no namespace):
				// anything broader is a Role's job.
				nodes := slices.Equal(r.APIGroups, []string{""}) && slices.Equal(r.Resources, []string{"nodes"})
				if (len(r.ResourceNames) == 0 && !nodes) || !slices.Equal(r.Verbs, []string{"get"}) {
					errs = append(errs, field.Invalid(field.NewPath("rules").Index(i), r.Verbs, "a generated ClusterRole may only get objects by name, or get nodes"))
				}
			}
		case *rbacv1.RoleBinding:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			errs = append(errs, subjects(t.Subjects, t.RoleRef)...)
		case *rbacv1.ClusterRoleBinding:
			errs = append(errs, meta(&t.ObjectMeta, false, apivalidation.NameIsDNSSubdomain)...)
			errs = append(errs, subjects(t.Subjects, t.RoleRef)...)
		case *networkingv1.Ingress:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			for i, r := range t.Spec.Rules {
				for _, m := range validation.IsDNS1123Subdomain(r.Host) {
					errs = append(errs, field.Invalid(field.NewPath("spec", "rules").Index(i).Child("host"), r.Host, m))
				}
			}
		case *triggersv1.EventListener, *triggersv1.TriggerBinding:
			if err := triggersCheck(t.(triggersObject)); err != nil {
				return fmt.Errorf("%s: %w", o.Source, err)
			}
		case *triggersv1.TriggerTemplate:
			if err := triggersCheck(t); err != nil {
				return fmt.Errorf("%s: %w", o.Source, err)
			}
			if err := checkTemplateResources(t); err != nil {
				return fmt.Errorf("%s: %w", o.Source, err)
			}
		case *admissionv1beta1.MutatingAdmissionPolicy:
			// The CEL itself is compiled by the API server when the policy
			// is applied (the cluster test applies it, and a broken one).
			errs = append(errs, meta(&t.ObjectMeta, false, apivalidation.NameIsDNSSubdomain)...)
			errs = append(errs, mutatingPolicy(t)...)
		case *admissionv1beta1.MutatingAdmissionPolicyBinding:
			errs = append(errs, meta(&t.ObjectMeta, false, apivalidation.NameIsDNSSubdomain)...)
			if !policies[t.Spec.PolicyName] {
				errs = append(errs, field.Invalid(field.NewPath("spec", "policyName"), t.Spec.PolicyName, "names no MutatingAdmissionPolicy of the same file"))
			}
		case *admissionv1.ValidatingAdmissionPolicy:
			// As for the mutating policies, the API server compiles the CEL
			// (the cluster test applies it and exercises it).
			errs = append(errs, meta(&t.ObjectMeta, false, apivalidation.NameIsDNSSubdomain)...)
			spec := field.NewPath("spec")
			if t.Spec.FailurePolicy == nil || *t.Spec.FailurePolicy != admissionv1.Fail {
				errs = append(errs, field.Invalid(spec.Child("failurePolicy"), t.Spec.FailurePolicy, "must be Fail: a policy that cannot be evaluated must refuse"))
			}
			if len(t.Spec.Validations) == 0 {
				errs = append(errs, field.Required(spec.Child("validations"), "a policy that checks nothing"))
			}
			if t.Spec.MatchConstraints == nil || len(t.Spec.MatchConstraints.ResourceRules) == 0 {
				errs = append(errs, field.Required(spec.Child("matchConstraints", "resourceRules"), "what the policy applies to"))
			}
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			errs = append(errs, meta(&t.ObjectMeta, false, apivalidation.NameIsDNSSubdomain)...)
			if !policies[t.Spec.PolicyName] {
				errs = append(errs, field.Invalid(field.NewPath("spec", "policyName"), t.Spec.PolicyName, "names no ValidatingAdmissionPolicy of the same file"))
			}
			if !slices.Contains(t.Spec.ValidationActions, admissionv1.Deny) {
				errs = append(errs, field.Invalid(field.NewPath("spec", "validationActions"), t.Spec.ValidationActions, "must include Deny"))
			}
		case *appsv1.DaemonSet:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			errs = append(errs, daemonSet(t)...)
		case *batchv1.CronJob:
			// The schedule is config's to check (robfig/cron, as the API
			// server); the rest is the pod's.
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			tmpl := field.NewPath("spec", "jobTemplate", "spec", "template")
			errs = append(errs, metav1validation.ValidateLabels(t.Spec.JobTemplate.Spec.Template.Labels, tmpl.Child("metadata", "labels"))...)
			errs = append(errs, podSpec(&t.Spec.JobTemplate.Spec.Template.Spec, tmpl.Child("spec"))...)
			if rp := t.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
				errs = append(errs, field.NotSupported(tmpl.Child("spec", "restartPolicy"), rp, []string{"Never", "OnFailure"}))
			}
		case *cluster.AppArmorProfile:
			errs = append(errs, meta(&t.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)...)
			if !strings.Contains(t.Spec.Policy, "profile "+t.Name+" ") {
				errs = append(errs, field.Invalid(field.NewPath("spec", "policy"), "...", "the policy must define profile "+t.Name+", the name pods use"))
			}
		default:
			return fmt.Errorf("%s: no checks for %T", o.Source, o.Object)
		}
	}
	return errs.ToAggregate()
}

// mutatingPolicy: what the API server requires of a policy's shape, and
// what this project requires of its policies (arch pinning, user
// namespaces): only pod creations, a label selector, and a failure policy
// that refuses rather than lets an unpinned or host-users build pod through.
func mutatingPolicy(p *admissionv1beta1.MutatingAdmissionPolicy) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	mc := p.Spec.MatchConstraints
	if mc == nil || len(mc.ResourceRules) == 0 {
		return append(errs, field.Required(spec.Child("matchConstraints", "resourceRules"), "the resources the policy mutates"))
	}
	if mc.ObjectSelector == nil || len(mc.ObjectSelector.MatchLabels) == 0 && len(mc.ObjectSelector.MatchExpressions) == 0 {
		errs = append(errs, field.Required(spec.Child("matchConstraints", "objectSelector"), "only the catalog's pods may be touched"))
	} else if _, err := metav1.LabelSelectorAsSelector(mc.ObjectSelector); err != nil {
		errs = append(errs, field.Invalid(spec.Child("matchConstraints", "objectSelector"), mc.ObjectSelector, err.Error()))
	}
	for i, r := range mc.ResourceRules {
		if !slices.Equal(r.Resources, []string{"pods"}) || !slices.Equal(r.Operations, []admissionv1beta1.OperationType{admissionv1beta1.Create}) {
			errs = append(errs, field.Invalid(spec.Child("matchConstraints", "resourceRules").Index(i), r, "only pod creations"))
		}
	}
	if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionv1beta1.Fail {
		errs = append(errs, field.Invalid(spec.Child("failurePolicy"), p.Spec.FailurePolicy, "must be Fail"))
	}
	names := map[string]bool{}
	for i, v := range p.Spec.Variables {
		if names[v.Name] || v.Expression == "" {
			errs = append(errs, field.Invalid(spec.Child("variables").Index(i), v.Name, "duplicate or empty"))
		}
		names[v.Name] = true
	}
	for i, m := range p.Spec.Mutations {
		if m.PatchType != admissionv1beta1.PatchTypeJSONPatch || m.JSONPatch == nil || m.JSONPatch.Expression == "" {
			errs = append(errs, field.Invalid(spec.Child("mutations").Index(i), m.PatchType, "a JSONPatch with an expression"))
		}
	}
	return errs
}

func subjects(ss []rbacv1.Subject, ref rbacv1.RoleRef) field.ErrorList {
	var errs field.ErrorList
	if ref.Name == "" || (ref.Kind != "Role" && ref.Kind != "ClusterRole") || ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.Invalid(field.NewPath("roleRef"), ref, "must name a Role or ClusterRole of "+rbacv1.GroupName))
	}
	for i, s := range ss {
		if s.Kind == rbacv1.ServiceAccountKind && (s.Namespace == "" || s.Name == "") {
			errs = append(errs, field.Required(field.NewPath("subjects").Index(i), "a ServiceAccount subject needs name and namespace"))
		}
	}
	return errs
}

type triggersObject interface {
	SetDefaults(context.Context)
	Validate(context.Context) *apis.FieldError
}

// triggersCheck runs the Triggers module's own defaulting and validation,
// as its admission webhook would.
func triggersCheck(o triggersObject) error {
	ctx := triggerscontexts.WithUpgradeViaDefaulting(Context())
	o.SetDefaults(ctx)
	if fe := o.Validate(ctx); fe != nil {
		return fe
	}
	return nil
}

// checkTemplateResources runs Tekton's validation and the project's lint on
// each resource the template creates, with every $(tt.params.x) given a
// value of the kind a push would give it.
func checkTemplateResources(tt *triggersv1.TriggerTemplate) error {
	for i, rt := range tt.Spec.ResourceTemplates {
		raw := string(rt.Raw)
		for _, p := range tt.Spec.Params {
			raw = strings.ReplaceAll(raw, "$(tt.params."+p.Name+")", SampleTemplateParam(p.Name))
		}
		if strings.Contains(raw, "$(tt.params.") {
			return fmt.Errorf("resourcetemplates[%d] uses an undeclared $(tt.params.*)", i)
		}
		var head metav1.TypeMeta
		if err := json.Unmarshal([]byte(raw), &head); err != nil {
			return fmt.Errorf("resourcetemplates[%d]: %w", i, err)
		}
		var objs Objects
		var om *metav1.ObjectMeta
		switch head.Kind {
		case "PipelineRun":
			var pr v1.PipelineRun
			if err := decodeStrict([]byte(raw), &pr); err != nil {
				return fmt.Errorf("resourcetemplates[%d]: %w", i, err)
			}
			objs.PipelineRuns, om = []*v1.PipelineRun{&pr}, &pr.ObjectMeta
		case "TaskRun":
			var tr v1.TaskRun
			if err := decodeStrict([]byte(raw), &tr); err != nil {
				return fmt.Errorf("resourcetemplates[%d]: %w", i, err)
			}
			objs.TaskRuns, om = []*v1.TaskRun{&tr}, &tr.ObjectMeta
		default:
			return fmt.Errorf("resourcetemplates[%d]: a %s; the templates create PipelineRuns and TaskRuns", i, head.Kind)
		}
		if om.Name == "" && om.GenerateName == "" {
			return fmt.Errorf("resourcetemplates[%d]: a run created on every event needs a name of the event or generateName", i)
		}
		// Namespace-less: the listener creates it in its own.
		if om.Name != "" {
			if msgs := apivalidation.NameIsDNSSubdomain(om.Name, false); len(msgs) > 0 {
				return fmt.Errorf("resourcetemplates[%d]: metadata.name %q: %s", i, om.Name, strings.Join(msgs, "; "))
			}
			// Tekton labels every pod with it.
			if msgs := validation.IsValidLabelValue(om.Name); len(msgs) > 0 {
				return fmt.Errorf("resourcetemplates[%d]: metadata.name %q is no label value, as Tekton makes it: %s", i, om.Name, strings.Join(msgs, "; "))
			}
		}
		if err := Check(objs); err != nil {
			return fmt.Errorf("resourcetemplates[%d]: %w", i, err)
		}
	}
	return nil
}

// SampleTemplateParam is what a push gives a TriggerTemplate param, for
// validating the resources it creates.
func SampleTemplateParam(name string) string {
	switch name {
	case "git-url":
		return "https://github.com/me/app.git"
	case "git-revision":
		return strings.Repeat("a", 40)
	case "git-ref":
		return "refs/heads/main"
	case "image-tag":
		return "aaaaaaaaaaaa"
	case "delivery":
		return "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	case "pull-request":
		return "12"
	case "keep-commit":
		return strings.Repeat("b", 40)
	}
	return "sample-" + name
}

func meta(m *metav1.ObjectMeta, namespaced bool, name apivalidation.ValidateNameFunc) field.ErrorList {
	return apivalidation.ValidateObjectMeta(m, namespaced, name, field.NewPath("metadata"))
}

func daemonSet(ds *appsv1.DaemonSet) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if ds.Spec.Selector == nil {
		return append(errs, field.Required(spec.Child("selector"), ""))
	}
	errs = append(errs, metav1validation.ValidateLabelSelector(ds.Spec.Selector, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), ds.Spec.Template.Labels, "must match spec.selector"))
	}
	errs = append(errs, metav1validation.ValidateLabels(ds.Spec.Template.Labels, spec.Child("template", "metadata", "labels"))...)
	errs = append(errs, podSpec(&ds.Spec.Template.Spec, spec.Child("template", "spec"))...)
	return errs
}

func podSpec(ps *corev1.PodSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	volumes := map[string]bool{}
	for i, v := range ps.Volumes {
		for _, m := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(path.Child("volumes").Index(i).Child("name"), v.Name, m))
		}
		if volumes[v.Name] {
			errs = append(errs, field.Duplicate(path.Child("volumes").Index(i).Child("name"), v.Name))
		}
		volumes[v.Name] = true
	}
	if len(ps.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), ""))
	}
	names := map[string]bool{}
	check := func(kind string, cs []corev1.Container) {
		for i, c := range cs {
			p := path.Child(kind).Index(i)
			for _, m := range validation.IsDNS1123Label(c.Name) {
				errs = append(errs, field.Invalid(p.Child("name"), c.Name, m))
			}
			if names[c.Name] {
				errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
			}
			names[c.Name] = true
			if c.Image == "" {
				errs = append(errs, field.Required(p.Child("image"), ""))
			}
			for j, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					errs = append(errs, field.NotFound(p.Child("volumeMounts").Index(j).Child("name"), m.Name))
				}
			}
			for j, e := range c.Env {
				for _, m := range validation.IsEnvVarName(e.Name) {
					errs = append(errs, field.Invalid(p.Child("env").Index(j).Child("name"), e.Name, m))
				}
			}
			for r, req := range c.Resources.Requests {
				if lim, ok := c.Resources.Limits[r]; ok && req.Cmp(lim) > 0 {
					errs = append(errs, field.Invalid(p.Child("resources", "requests").Key(string(r)), req.String(), "must not exceed the limit "+lim.String()))
				}
			}
		}
	}
	check("initContainers", ps.InitContainers)
	check("containers", ps.Containers)
	return errs
}
