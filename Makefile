# pnsflow — Kubernetes-native steps and workflows with a PNS executor.
# Tools are pinned in go.mod (tool directives) and run with `go tool`; built binaries live in bin/.

KUBE_VERSION ?= v1.37.2
LOCALBIN     ?= $(CURDIR)/bin
IMG          ?= pnsflow/manager:dev
EXECUTOR_IMG ?= pnsflow/pns-executor:dev
KUBECTL      ?= kubectl
CONTROLLER_GEN = go tool controller-gen
KUSTOMIZE      = go tool kustomize
# envtest's control plane, built from Go modules when missing (hack/envtest-assets.sh).
ENVTEST_ASSETS = $(shell hack/envtest-assets.sh kube-apiserver etcd)
# SeaweedFS's weed, the real S3 server internal/artifact's tests run against, built from Go modules
# by hack/seaweedfs.sh into bin/seaweedfs/ when missing: the first build takes about 12 minutes on 2
# cores (22 CPU-minutes, plus fetching ~430 modules), then it is cached in bin/ and takes no time.
WEED_DIR       = $(shell hack/seaweedfs.sh)
GO_TEST_FLAGS ?=
# Every Go build, vet and test is static, as the images' binaries must be. One build cache then
# serves the tests, the e2e suite, the plugin and the images: with cgo on for the tests, package
# net and everything above it (all of client-go) is compiled a second time for the images, about
# 4 minutes on a cold 2-core machine.
export CGO_ENABLED ?= 0

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs and the manager's ClusterRole.
	$(CONTROLLER_GEN) rbac:roleName=pnsflow-manager crd paths="./api/..." paths="./internal/controller/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet (including the e2e-tagged code).
	go vet ./...
	go vet -tags e2e ./test/...

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when generated files differ from what is committed, or go.mod is not tidy.
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; }
	@cd hack/kind/runc-wrapper && go mod tidy -diff || { echo "hack/kind/runc-wrapper: run 'go mod tidy' there and commit"; exit 1; }
	@cd hack/seaweedfs && GOWORK=off go mod tidy -diff || { echo "hack/seaweedfs: run 'go mod tidy' there and commit"; exit 1; }
	@git diff --exit-code -- api config || { echo "generated files drifted: run 'make manifests generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config)" || { git status --porcelain -- api config; echo "untracked generated files: commit them"; exit 1; }

.PHONY: envtest
envtest: ## Build (or reuse) kube-apiserver and etcd for envtest under bin/k8s.
	@echo "KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS)"

.PHONY: seaweedfs
seaweedfs: ## Build (or reuse) SeaweedFS's weed, the S3 server of the artifact tests, under bin/seaweedfs.
	@echo "WEED_BIN=$(WEED_DIR)/weed"

.PHONY: test
test: manifests generate fmt vet ## Run unit, executor and envtest integration tests.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" WEED_BIN="$(addsuffix /weed,$(WEED_DIR))" go test $(GO_TEST_FLAGS) ./... -coverprofile cover.out
	@# The kind node's runc wrapper is a module of its own (it builds without the project's deps).
	cd hack/kind/runc-wrapper && go test $(GO_TEST_FLAGS) ./...

# Native Go fuzz targets, each for FUZZTIME: `go test -fuzz` takes one target of one package per
# run. `make test` already runs every target's seeds (f.Add and testdata/fuzz/) as plain tests; a
# failure found here is written to the package's testdata/fuzz/<target>/ as a new seed.
FUZZTIME ?= 20s

.PHONY: fuzz
fuzz: ## Run each fuzz target (Pod builder, templates, when, output paths) for FUZZTIME.
	go test -run='^$$' -fuzz='^FuzzBuild$$' -fuzztime=$(FUZZTIME) ./internal/podspec
	go test -run='^$$' -fuzz='^FuzzResolve$$' -fuzztime=$(FUZZTIME) ./internal/workflow/template
	go test -run='^$$' -fuzz='^FuzzExecute$$' -fuzztime=$(FUZZTIME) ./internal/workflow/template
	go test -run='^$$' -fuzz='^FuzzCompile$$' -fuzztime=$(FUZZTIME) ./internal/workflow/when
	go test -run='^$$' -fuzz='^FuzzCollectStaysInRoot$$' -fuzztime=$(FUZZTIME) ./internal/executor

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager, pns-executor and kubectl-pnsflow binaries into bin/.
	CGO_ENABLED=0 go build -ldflags "-s -w" -o $(LOCALBIN)/manager ./cmd/manager
	CGO_ENABLED=0 go build -ldflags "-s -w" -o $(LOCALBIN)/pns-executor ./cmd/pns-executor
	CGO_ENABLED=0 go build -ldflags "-s -w" -o $(LOCALBIN)/kubectl-pnsflow ./cmd/kubectl-pnsflow

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the cluster in KUBECONFIG.
	go run ./cmd/manager --executor-image=$(EXECUTOR_IMG) --metrics-bind-address=0 --health-probe-bind-address=0

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster in KUBECONFIG.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs (and every StepRun) from the cluster.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

# deploy renders config/default through a throwaway overlay in bin/ that sets both images, so the
# committed kustomization never changes.
.PHONY: deploy
deploy: manifests ## Install CRDs, RBAC and the manager with IMG and EXECUTOR_IMG.
	@mkdir -p $(LOCALBIN)/deploy
	@# kustomize loads configurations only from within the overlay (its load restrictor): copy it in.
	@cp config/default/kustomizeconfig.yaml $(LOCALBIN)/deploy/kustomizeconfig.yaml
	@printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../config/default\nimages:\n- name: manager\n  newName: %s\n  newTag: %s\n- name: pns-executor\n  newName: %s\n  newTag: %s\nconfigurations:\n- kustomizeconfig.yaml\n' \
		"$(firstword $(subst :, ,$(IMG)))" "$(lastword $(subst :, ,$(IMG)))" \
		"$(firstword $(subst :, ,$(EXECUTOR_IMG)))" "$(lastword $(subst :, ,$(EXECUTOR_IMG)))" > $(LOCALBIN)/deploy/kustomization.yaml
	$(KUSTOMIZE) build $(LOCALBIN)/deploy | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove what deploy installed.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

##@ Local cluster (kind) and images
# A local kind cluster that builds offline (hack/kind/), the project's images (hack/images/), and
# `make quickstart`. Everything built or started lives under bin/; see hack/kind/*.sh for the why.

KIND_CLUSTER_NAME  ?= pnsflow
# Worker nodes beside the control plane: 0 is one node running everything (quickest to start);
# CI uses 2. Changing it needs KIND_RECREATE=1 on an existing cluster.
KIND_WORKERS       ?= 0
# Test images, built from Debian's busybox-static; SAMPLE_BUSYBOX_IMG is what config/samples uses.
BUSYBOX_IMG        ?= localhost/pnsflow-busybox:test
SAMPLE_BUSYBOX_IMG ?= busybox:1.36
ENTRYPOINT_IMG     ?= localhost/pnsflow-entrypoint:test
NONROOT_IMG        ?= localhost/pnsflow-nonroot:test
# The S3 server quickstart deploys as the default artifact repository (config/seaweedfs names it).
SEAWEEDFS_IMG      ?= localhost/pnsflow-seaweedfs:dev
KIND_IMAGES         = $(IMG) $(EXECUTOR_IMG) $(BUSYBOX_IMG) $(SAMPLE_BUSYBOX_IMG) $(ENTRYPOINT_IMG) $(NONROOT_IMG) $(SEAWEEDFS_IMG)
# The kubectl quickstart uses: $(KUBECTL) when installed, else one built from source into bin/k8s.
QUICKSTART_KUBECTL  = $(shell command -v $(KUBECTL) 2>/dev/null || hack/envtest-assets.sh kubectl | sed 's|$$|/kubectl|')
KIND_ENV            = KUBE_VERSION=$(KUBE_VERSION) KIND_CLUSTER_NAME=$(KIND_CLUSTER_NAME) KIND_WORKERS=$(KIND_WORKERS) IMG=$(IMG) \
                      EXECUTOR_IMG=$(EXECUTOR_IMG) BUSYBOX_IMG=$(BUSYBOX_IMG) \
                      SAMPLE_BUSYBOX_IMG=$(SAMPLE_BUSYBOX_IMG) ENTRYPOINT_IMG=$(ENTRYPOINT_IMG) NONROOT_IMG=$(NONROOT_IMG) \
                      SEAWEEDFS_IMG=$(SEAWEEDFS_IMG)

.PHONY: kind-node-image
kind-node-image: ## Build (or reuse) the offline kind node image for KUBE_VERSION.
	$(KIND_ENV) hack/kind/node-image.sh build

.PHONY: kind-up
kind-up: ## Start Docker if needed and create the kind cluster (kindest/node, else the offline image).
	$(KIND_ENV) hack/kind/kind-up.sh

.PHONY: kind-verify
kind-verify: ## Check the cluster: node Ready, kube-proxy, a Pod reaching the API via 10.96.0.1.
	$(KIND_ENV) hack/kind/verify.sh

.PHONY: kind-down
kind-down: ## Delete the kind cluster and stop the Docker daemons kind-up started (by PID).
	$(KIND_ENV) hack/kind/kind-down.sh

.PHONY: images
images: ## Build the manager, pns-executor and test images without pulling any base image.
	$(KIND_ENV) hack/images/build.sh all

.PHONY: images-online
images-online: ## Build the manager and pns-executor images with the root Dockerfile (pulls golang).
	$(KIND_ENV) IMAGES_ONLINE=1 hack/images/build.sh manager pns-executor

.PHONY: kind-load
kind-load: ## Load the manager, pns-executor and test images into the kind cluster.
	$(KIND_ENV) hack/kind/load.sh $(KIND_IMAGES)

.PHONY: quickstart
quickstart: ## kind-up, images, kind-load, deploy, then run the sample StepRun and show it.
	$(KIND_ENV) hack/kind/kind-up.sh
	$(MAKE) images kind-load
	$(MAKE) deploy KUBECTL="$(QUICKSTART_KUBECTL)"
	$(KIND_ENV) KUBECTL="$(QUICKSTART_KUBECTL)" hack/kind/quickstart.sh

##@ End-to-end on the kind cluster
# test/e2e (build tag e2e) runs against the cluster in KUBECONFIG (its current context) with the
# operator deployed and the test images loaded: run `make quickstart` first. Every case asserts
# through the API in a namespace of its own; bench-e2e is the Ginkgo label `bench`, kept out of
# test-e2e. E2E_KUBECTL is the real kubectl the printer-column case runs (built into bin/k8s
# like the envtest binaries when missing).
E2E_KUBECTL  ?= $(shell hack/envtest-assets.sh kubectl)/kubectl
E2E_TIMEOUT  ?= 60m
E2E_FLAGS    ?=
# Each suite's Ginkgo JSON report: `go run ./hack/failures` prints its failed specs briefly
# (.ci/run does at its end, where CI's excerpt of the output is).
E2E_REPORT   ?= $(LOCALBIN)/e2e/report.json
CHAOS_REPORT ?= $(LOCALBIN)/e2e/chaos-report.json
E2E_ENV       = E2E_WORKERS="$(KIND_WORKERS)" E2E_KUBECTL="$(E2E_KUBECTL)" E2E_BUSYBOX_IMG="$(BUSYBOX_IMG)" E2E_ENTRYPOINT_IMG="$(ENTRYPOINT_IMG)" E2E_NONROOT_IMG="$(NONROOT_IMG)"

.PHONY: test-e2e
test-e2e: ## Run the e2e suite (test/e2e) on the cluster in KUBECONFIG; make quickstart first.
	@mkdir -p $(dir $(E2E_REPORT))
	$(E2E_ENV) go test -tags e2e ./test/e2e -count=1 -timeout $(E2E_TIMEOUT) -v -ginkgo.v \
		-ginkgo.label-filter='!bench' -ginkgo.json-report="$(E2E_REPORT)" $(E2E_FLAGS)

# test-chaos (test/chaos, build tag chaos) injects faults under running StepRuns on the same
# cluster: the kube-apiserver killed (docker exec into the kind node), the manager's Pod deleted,
# executors SIGKILLed, Pods evicted, main OOM-killed. CI runs it after test-e2e.
CHAOS_FLAGS ?=

.PHONY: test-chaos
test-chaos: ## Inject faults under running StepRuns on that cluster (test/chaos); after test-e2e.
	@mkdir -p $(dir $(CHAOS_REPORT))
	$(E2E_ENV) go test -tags chaos ./test/chaos/ -count=1 -timeout 15m -v -ginkgo.v \
		-ginkgo.json-report="$(CHAOS_REPORT)" $(CHAOS_FLAGS)

.PHONY: bench-e2e
bench-e2e: ## Measure StepRuns against bare Pods on that cluster; the table also goes to bin/e2e/.
	$(E2E_ENV) E2E_BENCH_OUT="$(LOCALBIN)/e2e/bench-e2e.txt" go test -tags e2e ./test/e2e -run TestE2E \
		-count=1 -timeout $(E2E_TIMEOUT) -v -ginkgo.v -ginkgo.label-filter=bench $(E2E_FLAGS)

##@ Artifact benchmark

.PHONY: bench-artifacts
bench-artifacts: ## Artifact upload/download (1 GiB file, 10 000-file tree) vs plain SDK copies, on SeaweedFS.
	go vet -tags bench ./internal/artifact
	WEED_BIN="$(addsuffix /weed,$(WEED_DIR))" BENCH_ARTIFACTS_OUT="$(LOCALBIN)/bench/artifacts.txt" \
		go test -tags bench ./internal/artifact -run TestBenchArtifacts -count=1 -timeout 30m -v

##@ Fan-out benchmark

BENCH_N       ?= 100,1000,5000
BENCH_MANAGER ?= binary
BENCH_TIMEOUT ?= 60m
# Sizes whose fan-out gets a kube-apiserver CPU profile (bin/bench/apiserver-fanout.pprof); "none".
BENCH_APISERVER_PROFILE ?= 5000

.PHONY: bench
bench: manifests ## Fan-out benchmark on envtest (BENCH_N=100,1000,5000); prints the table, artifacts in bin/bench/.
	go vet -tags bench ./test/bench
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" BENCH_N="$(BENCH_N)" BENCH_MANAGER="$(BENCH_MANAGER)" \
		BENCH_APISERVER_PROFILE="$(BENCH_APISERVER_PROFILE)" \
		go test -tags bench ./test/bench -run TestFanOut -count=1 -timeout $(BENCH_TIMEOUT) -v
