package config

import (
	"errors"
	"strings"
	"testing"
)

func TestUserNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		// hostUsers is the pods' spec.hostUsers: "" for the field left out.
		hostUsers string
		err       string
	}{
		{name: "default off", yaml: "", hostUsers: ""},
		{name: "off", yaml: "build: {userNamespaces: false}", hostUsers: ""},
		{name: "on", yaml: "build: {userNamespaces: true}", hostUsers: "false"},
		{name: "on with vfs", yaml: "build: {userNamespaces: true, storage: vfs}", hostUsers: "false"},
		{name: "a string", yaml: `build: {userNamespaces: "yes"}`, err: "build.userNamespaces: wrong type: got string, want bool"},
		{name: "Kubernetes' name", yaml: "build: {hostUsers: false}", err: "build.hostUsers: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "userns.yaml")
			if tc.err != "" {
				var ce *Error
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want a configuration error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if h := c.Build.HostUsers(); h != nil {
				got = map[bool]string{true: "true", false: "false"}[*h]
			}
			if got != tc.hostUsers {
				t.Errorf("HostUsers() = %q, want %q", got, tc.hostUsers)
			}
		})
	}
}
