package config

import (
	"strings"
	"testing"
)

func TestPullRequests(t *testing.T) {
	for _, tc := range []struct {
		name, yaml     string
		enabled, forks bool
		wantErr        string // "" means accepted
	}{
		{"default: on, no forks", "", true, false, ""},
		{"off", "triggers: {pullRequests: {enabled: false}}", false, false, ""},
		{"forks on", "triggers: {pullRequests: {forks: true}}", true, true, ""},
		{"forks without pull requests", "triggers: {pullRequests: {enabled: false, forks: true}}", false, false,
			"triggers.pullRequests.forks: true has no effect while triggers.pullRequests.enabled is false"},
		{"misspelt field", "triggers: {pullRequests: {fork: true}}", false, false, "triggers.pullRequests.fork: unknown field"},
		{"not a boolean", "triggers: {pullRequests: {enabled: yes please}}", false, false, "triggers.pullRequests.enabled: wrong type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "pr.yaml")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Triggers.PullRequests; got.Enabled != tc.enabled || got.Forks != tc.forks {
				t.Errorf("pullRequests = %+v, want enabled %v, forks %v", got, tc.enabled, tc.forks)
			}
		})
	}
}
