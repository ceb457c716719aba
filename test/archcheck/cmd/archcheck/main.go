// Command archcheck checks multi-platform OCI image archives with package
// archcheck: each must be one image index with exactly the platforms of
// -platforms, each platform's ELF files built for its machine. It prints
// what it found on stderr and, with -env, the digests as shell variables on
// stdout (<NAME>_DIGEST for the index, <NAME>_DIGEST_<ARCH> per platform).
// It exits 1 when an archive fails the check.
//
//	archcheck -platforms linux/amd64,linux/arm64 [-env NAME] FILE...
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tekton-multiarch/tekton-multiarch/test/archcheck"
)

func main() {
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "the platforms each index must have, comma separated")
	env := flag.String("env", "", "print the digests as NAME_DIGEST=... (the index) and NAME_DIGEST_<ARCH>=... (each platform's manifest)")
	flag.Parse()
	if flag.NArg() == 0 || (*env != "" && flag.NArg() != 1) {
		fmt.Fprintln(os.Stderr, "usage: archcheck [-platforms P,...] [-env NAME] FILE... (one FILE with -env)")
		os.Exit(2)
	}
	failed := false
	for _, path := range flag.Args() {
		rep, err := archcheck.CheckArchive(path, strings.Split(*platforms, ","))
		if rep != nil {
			fmt.Fprintf(os.Stderr, "%s: %s, index %s\n", path, rep.Ref, rep.Index)
			for _, p := range rep.Platforms {
				fmt.Fprintf(os.Stderr, "  %s\n", p.Summary())
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "archcheck: %v\n", err)
			failed = true
			continue
		}
		if *env != "" {
			fmt.Printf("%s_DIGEST=%s\n", *env, rep.Index)
			for _, p := range rep.Platforms {
				fmt.Printf("%s_DIGEST_%s=%s\n", *env, strings.ToUpper(p.Architecture), p.Digest)
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
