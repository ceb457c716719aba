//go:build tools

// Package tools pins the cosign CLI the cluster test verifies Chains'
// signatures and attestations with, in the module that builds the Chains
// controller (./controller), so both share one dependency graph and one build.
package tools

import (
	_ "github.com/sigstore/cosign/v2/cmd/cosign"
)
