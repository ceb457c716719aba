package config

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
}

// validatePullRequests refuses a setting that would silently do nothing.
func validatePullRequests(path string, p PullRequests) []FieldError {
	if p.Forks && !p.Enabled {
		return []FieldError{{Path: path + ".forks", Message: "true has no effect while " + path + ".enabled is false; set enabled: true to build pull requests, or remove forks"}}
	}
	return nil
}
