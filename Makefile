# tekton-multiarch: `make generate` writes the catalog, `make test` checks everything.
SHELL := /bin/bash
GO ?= go
# Tools built from the Go module proxy are cached outside the repo, keyed by version.
CACHE ?= $(or $(TEKTON_MULTIARCH_CACHE),$(HOME)/.cache/tekton-multiarch)
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck

.PHONY: generate check-generated lint unit test bench bench-emulation e2e-cluster

## generate: write tasks/, pipelines/ and examples/ from the embedded default configuration
generate:
	$(GO) run ./generator generate

## check-generated: fail with a diff when the committed catalog is stale
check-generated:
	$(GO) run ./generator generate --check

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## lint: the tree's layout (no binaries, no stray top-level files), gofmt, go vet,
## staticcheck, shellcheck on the step scripts
lint: $(STATICCHECK)
	$(GO) run ./test/treecheck
	@unformatted=$$(gofmt -l generator test 2>/dev/null); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	shellcheck --shell=sh generator/scripts/*.sh

## unit: the generator's own tests (golden, Tekton validation, lint, configs)
unit:
	$(GO) test ./generator/...

## e2e-cluster: the catalog on a real API server with the real Tekton controller, on kwok
## nodes (TestCluster), on a real kubelet + containerd node (TestRealNode), and on an arm64
## node emulated by qemu-system-aarch64 beside it (TestArm64Node) (as root; builds its
## binaries, images and the arm64 machine into $(CACHE) first: about 20 minutes cold, then cached)
e2e-cluster:
	test/cluster/build-all.sh
	$(GO) test -count=1 -v -timeout 45m ./test/cluster/

## test: everything CI runs
test: lint check-generated
	$(GO) test $$($(GO) list ./... | grep -v /test/cluster)
	$(MAKE) e2e-cluster

## bench: benchmarks, with ratios against the obvious alternatives; the storage modes
## (the kernel's overlay, fuse-overlayfs, vfs) on the real node, BENCH_ROUNDS builds of
## each Dockerfile in each mode; the SBOM's cost (SBOM off against on, BENCH_ROUNDS
## builds of each); 50 concurrent runs on 40 kwok nodes pinned by the arch policy
## against taskRunSpecs (BENCH_ROUNDS rounds of each); where a build pod's time goes, phase by phase,
## for the buildah-build TaskRun against the same buildah bud + push in a bare pod (unprivileged as
## our step, and privileged), and for the two-arch Pipeline (BENCH_ROUNDS rounds); how that time
## grows with a build context and image of BENCH_SIZES MB (as root; builds the cluster binaries and
## images first, as e2e-cluster does). CI runs bench-emulation only.
BENCH_ROUNDS ?= 3
BENCH_SIZES ?= 10,200,1000
bench:
	$(GO) test ./generator/catalog -run '^$$' -bench . -benchtime 50x -count 3 | tee /tmp/tekton-multiarch-bench-generate.txt
	@awk '/^BenchmarkRenderOrdered/{o+=$$3;no++} /^BenchmarkRenderSigsYAML/{s+=$$3;ns++} \
		END{printf "render: ordered %.2f ms/op, sigs.k8s.io/yaml %.2f ms/op, ratio ordered/sigs = %.2f\n", o/no/1e6, s/ns/1e6, (o/no)/(s/ns)}' /tmp/tekton-multiarch-bench-generate.txt
	$(GO) test -run '^$$' -bench 'BenchmarkTwoArch|BenchmarkLayerCache' -benchtime 1x -timeout 40m ./test/realbuild/
	test/cluster/build-all.sh
	$(GO) test -run '^$$' -bench 'BenchmarkStorageModes' -benchtime 1x -timeout 90m ./test/cluster/ -storage-rounds=$(BENCH_ROUNDS)
	$(GO) test -run '^$$' -bench 'BenchmarkSBOM' -benchtime 1x -timeout 60m ./test/cluster/ -sbom-rounds=$(BENCH_ROUNDS)
	$(GO) test -run '^$$' -bench 'BenchmarkLoad' -benchtime 1x -timeout 60m ./test/cluster/ -load-rounds=$(BENCH_ROUNDS)
	$(GO) test -run '^$$' -bench 'BenchmarkPhases' -benchtime 1x -timeout 90m ./test/cluster/ -phase-rounds=$(BENCH_ROUNDS)
	$(GO) test -run '^$$' -bench 'BenchmarkSizes' -benchtime 1x -timeout 60m ./test/cluster/ -sizes=$(BENCH_SIZES)
	$(MAKE) bench-emulation

## bench-emulation: on the real node, a CPU-bound RUN step native against emulated (as root;
## CI runs it too, so every CI log has the ratio)
bench-emulation:
	test/cluster/build-all.sh
	$(GO) test -run '^$$' -bench 'BenchmarkEmulation' -benchtime 1x -timeout 45m ./test/cluster/
