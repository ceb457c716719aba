package config

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation"
)

// PullRequests is about build-only runs of pull requests (GitHub
// pull_request, GitLab merge request events): every architecture is built
// and checked, nothing is pushed.
type PullRequests struct {
	// Enabled adds the pull-request trigger to the EventListener. On by
	// default: it starts nothing until the webhook is also subscribed to
	// pull request (merge request) events, its runs push nothing and bind
	// no Secret, and forks stay off below.
	Enabled bool `json:"enabled"`
	// Forks also builds pull requests whose head is another repository (a
	// fork). Off by default: anyone can open one on a public repository,
	// so it runs a stranger's Dockerfile on the build nodes.
	Forks bool `json:"forks"`
	// CancelSuperseded cancels a pull request's runs still in progress
	// when it gets new commits (they build a head nobody will merge) or is
	// closed or merged, through a TaskRun the listener starts as
	// CancelServiceAccount. Branch and tag builds are never cancelled.
	CancelSuperseded bool `json:"cancelSuperseded"`
	// CancelServiceAccount is the canceller's own identity: it may list
	// and cancel this catalog's pull-request runs in the build namespace,
	// nothing else (a Role and an admission policy).
	CancelServiceAccount string `json:"cancelServiceAccount"`
}

// validatePullRequests refuses a setting that would silently do nothing.
func validatePullRequests(path string, p PullRequests) []FieldError {
	var errs []FieldError
	if p.Forks && !p.Enabled {
		errs = append(errs, FieldError{Path: path + ".forks", Message: "true has no effect while " + path + ".enabled is false; set enabled: true to build pull requests, or remove forks"})
	}
	// cancelSuperseded is on by default, so it is not refused without
	// enabled (a user turning pull requests off would have to turn it off
	// too); it then does nothing, as the README says.
	if p.Enabled && p.CancelSuperseded {
		for _, m := range validation.IsDNS1123Subdomain(p.CancelServiceAccount) {
			errs = append(errs, FieldError{Path: path + ".cancelServiceAccount", Message: fmt.Sprintf("%q is not a ServiceAccount name: %s", p.CancelServiceAccount, m)})
		}
	}
	return errs
}
