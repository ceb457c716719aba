package catalog

import (
	"bytes"
	"embed"
	"fmt"
	"path"
	"strings"
	"text/template"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-multiarch/tekton-multiarch/generator/cluster"
	"github.com/tekton-multiarch/tekton-multiarch/generator/config"
	"github.com/tekton-multiarch/tekton-multiarch/generator/pipeline"
	"github.com/tekton-multiarch/tekton-multiarch/generator/tasks"
	"github.com/tekton-multiarch/tekton-multiarch/generator/triggers"
)

//go:embed templates/*.md.tmpl
var templates embed.FS

type readmeData struct {
	Config    *config.Config
	Task      *v1.Task
	Objects   Objects
	Version   string
	MinTekton string
	Platforms string
	// PerArchAppArmor lists "arch: setting" where the architectures'
	// AppArmor settings differ; empty where they do not.
	PerArchAppArmor []string
}

var funcs = template.FuncMap{
	"params":         paramsTable,
	"results":        resultsTable,
	"workspaces":     workspacesTable,
	"pipelineParams": func(p *v1.Pipeline) string { return specsTable(p.Spec.Params) },
	"pipelineResults": func(p *v1.Pipeline) string {
		var b strings.Builder
		b.WriteString("| Result | Description |\n| --- | --- |\n")
		for _, r := range p.Spec.Results {
			fmt.Fprintf(&b, "| `%s` | %s |\n", r.Name, r.Description)
		}
		return b.String()
	},
	"buildTask":       pipeline.BuildTask,
	"registryHost":    cluster.RegistryHost,
	"escapeDots":      func(s string) string { return strings.ReplaceAll(s, ".", `\\.`) },
	"userns":          func() string { return usernsNote },
	"filter":          triggers.Filter,
	"imageTag":        triggers.ImageTagOverlay,
	"providerName":    providerName,
	"eventTypes":      triggers.EventTypes,
	"prFilter":        triggers.PullRequestFilter,
	"prEventTypes":    triggers.PullRequestEventTypes,
	"prTrigger":       triggers.PullRequestTrigger,
	"install":         InstallCommand,
	"buildTaskLabel":  func() string { return tasks.BuildTaskLabel },
	"tknStart":        TknStartCommand,
	"tknStartMatrix":  TknStartMatrixCommand,
	"imageTagCheck":   triggers.ImageTagCheck,
	"archPolicyAPI":   func() string { return cluster.ArchPolicyAPIVersion },
	"chainsNamespace": func() string { return cluster.ChainsNamespace },
	"chainsConfig":    func() map[string]string { return cluster.ChainsConfig().Data },
	"chainsWhy":       func(k string) string { return chainsWhy[k] },
	"sample":          SampleFile,
	"code": func(xs []string) string {
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = "`" + x + "`"
		}
		return strings.Join(q, ", ")
	},
	"seccompFile":   SeccompFile,
	"loaderDir":     func() string { return path.Dir(LoaderFile) },
	"seccompAdded":  func() []string { return cluster.BuildahSyscalls },
	"seccompKernel": func() string { return cluster.MaxMinKernel },
	"loaderName":    func() string { return cluster.LoaderName },
	"seccompArches": func(o Objects) []string {
		var a []string
		for _, x := range o.Cluster.SeccompProfile.Architectures {
			a = append(a, string(x))
		}
		return a
	},
}

// usernsNote says how the profile deals with user namespace mediation.
const usernsNote = `Measured and read, not guessed:

- AppArmor 3 parsers (Debian 12, Ubuntu 22.04) reject a ` + "`userns,`" + ` rule outright (apparmor_parser
  3.0.8: "syntax error, unexpected TOK_END_OF_RULE, expecting TOK_MODE"; the tests check it), and
  no conditional in the policy language hides a rule from a parser that cannot parse it. A profile
  with the rule could not load on those nodes at all.
- The kernel mediates user namespace creation for a confined process only when the profile was
  compiled against a feature ABI that includes it (Linux security/apparmor/task.c returns "allowed"
  otherwise). A profile without an ` + "`abi`" + ` line, like this one and the engines' defaults (none of
  containerd's, Docker's or containers/common's has a userns rule), compiles against the parser's
  default or pinned ABI, which on the AppArmor 3 ABI and on Ubuntu 24.04's pins has no userns
  mediation, so buildah can create its user namespace there. Where a newer pin does mediate it
  (LXC saw that with Debian's AppArmor 4.1), the rule is needed.
- So the profile includes ` + "`local/<profile>`" + ` (` + "`include if exists`" + `, harmless when absent), and the
  loader writes ` + "`userns,`" + ` into it only on nodes whose own apparmor_parser is 4 or newer and whose
  kernel has ` + "`features/namespaces/userns_create`" + `; everywhere else that file holds only a comment.
  With the security-profiles-operator, add the rule yourself on such nodes.

Check a node: ` + "`grep policy-features /etc/apparmor/parser.conf`" + `, and after a first build look for
` + "`apparmor=\"DENIED\" operation=\"userns_create\"`" + ` in its kernel log.`

func readme(name string, cfg *config.Config, o Objects, t *v1.Task) ([]byte, error) {
	tmpl, err := template.New(name+".md.tmpl").Funcs(funcs).ParseFS(templates, "templates/"+name+".md.tmpl")
	if err != nil {
		return nil, err
	}
	var perArch []string
	if _, uniform := cfg.AppArmorUniform(); !uniform {
		for _, a := range cfg.Architectures {
			perArch = append(perArch, "`"+a.ID()+"`: "+cfg.AppArmorFor(a))
		}
	}
	var b bytes.Buffer
	b.WriteString("<!-- Code generated by the tekton-multiarch generator (make generate); DO NOT EDIT. -->\n")
	err = tmpl.Execute(&b, readmeData{
		Config: cfg, Task: t, Objects: o, Version: cfg.Catalog.Version,
		MinTekton: tasks.MinPipelinesVersion(cfg), Platforms: tasks.Platforms(cfg),
		PerArchAppArmor: perArch,
	})
	return b.Bytes(), err
}

func specsTable(ps v1.ParamSpecs) string {
	var b strings.Builder
	b.WriteString("| Param | Type | Default | Description |\n| --- | --- | --- | --- |\n")
	for _, p := range ps {
		def := "(required)"
		if p.Default != nil {
			switch p.Default.Type {
			case v1.ParamTypeArray:
				def = "`[" + strings.Join(p.Default.ArrayVal, ", ") + "]`"
			default:
				def = "`" + p.Default.StringVal + "`"
				if p.Default.StringVal == "" {
					def = `""`
				}
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", p.Name, p.Type, def, p.Description)
	}
	return b.String()
}

func paramsTable(t *v1.Task) string { return specsTable(t.Spec.Params) }

func resultsTable(t *v1.Task) string {
	var b strings.Builder
	b.WriteString("| Result | Description |\n| --- | --- |\n")
	for _, r := range t.Spec.Results {
		fmt.Fprintf(&b, "| `%s` | %s |\n", r.Name, r.Description)
	}
	return b.String()
}

func workspacesTable(t *v1.Task) string {
	var b strings.Builder
	b.WriteString("| Workspace | Optional | Description |\n| --- | --- | --- |\n")
	for _, w := range t.Spec.Workspaces {
		fmt.Fprintf(&b, "| `%s` | %v | %s |\n", w.Name, w.Optional, w.Description)
	}
	return b.String()
}
