# fhirwall: `make demo` brings up the default stack and prints what to try; `make test` runs every test.
SHELL := /usr/bin/env bash
GO    ?= go
STATE := .fhirwall
OPA   := $(STATE)/bin/opa

.PHONY: demo test unit policy-test e2e stack-up stack-down build fuzz bench bench-micro bench-kafka bench-hapi

## demo: the real stack (Kafka, Keycloak, HAPI FHIR + seed data, fhirwall-xds, fhirwall-proxy, Envoy) on loopback
demo: stack-up
	@bash test/stack/demo-info.sh

## test: unit tests, policy tests, the Helm chart, then the end-to-end and fault suites against the real stack.
## FHIRWALL_REQUIRE_ALL=1 (test/require): a test that would skip for a missing tool fails instead.
test: export FHIRWALL_REQUIRE_ALL := 1
test: test-tools unit policy-test helm-test e2e

# -race over the packages that run goroutines or share state between requests (a second, instrumented run).
RACE_PKGS := ./internal/audit/... ./internal/capability/... ./internal/decision/... ./internal/gateway/... \
             ./internal/metrics/... ./internal/policy/... ./internal/ratelimit/... ./internal/token/... \
             ./internal/xds/... ./internal/seal/... ./internal/portal/... ./internal/jsonenc/... ./adapters/... ./filters/... ./test/parity/...
unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(GO) test -race -count=1 $(RACE_PKGS)

# opa is built from the Go module cache at the version go.mod pins, so policy tests match the engine.
$(OPA): go.mod
	@mkdir -p $(STATE)/bin
	$(GO) build -o $(OPA) github.com/open-policy-agent/opa

policy-test: $(OPA)
	$(OPA) fmt --list --fail policies
	$(OPA) check --strict policies
	$(OPA) test --coverage --format=json policies | $(GO) run ./test/tools/opacoverage -min 95
	$(OPA) test policies
	# the peer's policy for the benchmark (test/bench/peer, opa-envoy-plugin's input)
	$(OPA) fmt --list --fail test/bench/peer
	$(OPA) check --strict test/bench/peer/policy.rego test/bench/peer/policy_test.rego
	$(OPA) test test/bench/peer/policy.rego test/bench/peer/policy_test.rego

# HAPI's profile validator (Java, test/tools/fhir-validator), for the tests that check generated resources
# against the IG packages; rebuilt only when its sources change.
VALIDATOR := test/tools/fhir-validator/target/fhir-validator-0.1.0.jar
$(VALIDATOR): test/tools/fhir-validator/pom.xml $(shell find test/tools/fhir-validator/src -type f)
	mvn -q -B -f test/tools/fhir-validator/pom.xml package

# What the unit tests run besides Go (Envoy, the HAPI jar the validator's build fetches, helm, promtool), ready before them.
.PHONY: test-tools
test-tools: $(VALIDATOR)
	bash test/stack/envoy.sh install
	bash test/stack/chromium.sh install
	@[ -x $(STATE)/bin/helm ] || GO=$(GO) bash test/tools/helm/build.sh
	GO=$(GO) bash test/tools/prometheus/build.sh

## alerts-test: promtool checks and unit-tests the chart's alert rules (test/alerts); promtool and prometheus are
## built from the Prometheus module (test/tools/prometheus) into $$HOME/.cache/fhirwall/bin, one build per version.
.PHONY: alerts-test
alerts-test:
	@[ -x $(STATE)/bin/helm ] || GO=$(GO) bash test/tools/helm/build.sh
	GO=$(GO) bash test/tools/prometheus/build.sh
	FHIRWALL_REQUIRE_ALL=1 $(GO) test -count=1 ./test/alerts

# Browser screenshots (the portal, the lifecycle walk) land in $(ARTIFACTS)/portal.
ARTIFACTS ?= $(CURDIR)/.fhirwall/artifacts
# The end-to-end and fault suites stream `go test -json` through test/tools/evidence (it prints the usual -v
# text and keeps the JSON), then the compliance matrix is built from both runs into $(ARTIFACTS)/evidence
# (matrix.md, matrix.html, matrix.json; docs/compliance.md). The fault suite runs even when e2e failed, so the
# matrix covers both; make still fails.
EVIDENCE     := $(ARTIFACTS)/evidence
EVIDENCE_BIN := $(STATE)/bin/evidence
.PHONY: evidence evidence-matrix $(EVIDENCE_BIN)

# rebuilt every time (a no-op when nothing changed), so the table and the tool are never stale
$(EVIDENCE_BIN):
	$(GO) build -o $@ ./test/tools/evidence

e2e: stack-up $(VALIDATOR) $(EVIDENCE_BIN)
	@mkdir -p $(EVIDENCE)
	set -o pipefail; rc=0; \
	FHIRWALL_REQUIRE_ALL=1 FHIRWALL_ARTIFACTS=$(ARTIFACTS) $(GO) test -json -tags e2e -count=1 -p 1 -timeout 40m ./test/... ./internal/xds/... ./internal/datascope/... ./internal/audit/... ./adapters/... ./cmd/... 2>&1 \
	  | $(EVIDENCE_BIN) tee -json $(EVIDENCE)/e2e.json || rc=1; \
	$(MAKE) --no-print-directory faults-run || rc=1; \
	$(MAKE) --no-print-directory evidence-matrix || rc=1; \
	exit $$rc
	@echo "stack left running for the next run; stop it with: make stack-down"

## evidence-matrix: matrix.md, matrix.html, matrix.json in $(ARTIFACTS)/evidence from the last e2e and fault runs
evidence-matrix: $(EVIDENCE_BIN)
	$(EVIDENCE_BIN) build -out $(EVIDENCE) $(EVIDENCE)/e2e.json $(EVIDENCE)/faults.json

## evidence: run the end-to-end and fault suites against the real stack and write the compliance matrix
evidence: e2e

stack-up:
	bash test/stack/up.sh

stack-down:
	bash test/stack/down.sh

build:
	bash test/stack/fhirwall.sh build

## fuzz: a short run of every fuzz target (seed corpora always run as part of `make unit`); FUZZTIME=3m for longer
FUZZTIME ?= 20s
fuzz:
	for t in FuzzParse:./internal/smart FuzzClassify:./internal/fhir FuzzParseForm:./internal/fhir FuzzBundle:./internal/fhir \
	         FuzzRoute:./internal/decision FuzzNormalizePath:./internal/gateway FuzzFromAuthorization:./internal/token \
	         FuzzVerify:./internal/token FuzzTranslate:./internal/xds FuzzParseLine:./internal/audit \
	         FuzzEnforceBundle:./internal/decision FuzzShape:./internal/decision FuzzApply:./internal/datascope \
	         FuzzParseDate:./internal/fhir FuzzParseSubmission:./adapters/payerexchange \
	         FuzzParseSubmission:./adapters/priorauth FuzzParseRules:./adapters/priorauth/um \
	         FuzzParseSubscription:./adapters/priorauth/subscriptions FuzzParseOutcome:./adapters/profilevalidator \
	         FuzzValidateRegistration:./adapters/registry/apps FuzzParseRequest:./adapters/registry/revocation \
	         FuzzRegistrationMetadata:./adapters/registry/dcr FuzzParseDocs:./internal/portal FuzzSessionCookie:./internal/portal \
	         FuzzSafeReturn:./internal/portal FuzzSessionKey:./internal/portal FuzzEnforceSandbox:./internal/decision \
	         FuzzAdoptedKeysShowNoDrift:./adapters/registry/keycloak FuzzTagMakesAnyResourceSynthetic:./adapters/synthetic \
	         FuzzOpen:./internal/seal FuzzParseKeyring:./internal/seal FuzzUnseal:./internal/decision \
	         FuzzGlobalVerdict:./internal/ratelimit FuzzRateLimitConfig:./internal/xds \
	         FuzzCanonical:./internal/decision FuzzCarriedEncoding:./internal/decision FuzzEnforceDifferential:./internal/decision \
	         FuzzDecodeDifferential:./internal/decision FuzzAccessRecordEncoding:./internal/audit \
	         FuzzString:./internal/jsonenc FuzzFloat64:./internal/jsonenc FuzzTime:./internal/jsonenc \
	         FuzzCarriedDecoding:./internal/decision FuzzApplyMatchesWalk:./internal/datascope FuzzPatientsOf:./internal/fhir \
	         FuzzRewrittenRulesDecideAsTheReference:./internal/policy \
	         FuzzVerify:./internal/evidence FuzzParseRequirements:./internal/evidence FuzzParseProvesLine:./internal/evidence FuzzStream:./test/tools/evidence \
	         FuzzRecordedInput:./internal/decision FuzzReplayRecord:./internal/policy/replay \
	         FuzzParseConfig:./internal/selftest FuzzLeaksFindsAnInsertedReference:./internal/selftest; do \
	  $(GO) test -run=^$$ -fuzz=^$${t%%:*}$$ -fuzztime=$(FUZZTIME) $${t#*:} || exit 1; done
	FHIRWALL_PROPERTY_N=10000 $(GO) test -tags e2e -count=1 -timeout 60m -run '^TestProperty' ./test/adversarial/

## bench: the micro-benchmarks, then the side-by-side load run (test/bench/load; BENCHMARKS.md): the limit
## (bare Go proxy, Envoy alone), fhirwall standalone, Envoy + fhirwall, and the peer at $$PEER_AUTHZ_ADDR if set.
## BENCH_ARGS passes flags (-duration, -rates, -only, -profile); `make bench-hapi` runs it against the stack's HAPI.
BENCH_ARGS ?=
bench: bench-micro bench-kafka
	$(GO) run ./test/bench/load $(BENCH_ARGS)

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./test/parity ./internal/policy ./internal/fhir ./internal/token ./internal/audit

bench-kafka:
	bash test/stack/kafka.sh start
	bash test/stack/kafka.sh topic fhirwall.bench 3

## bench-priorauth: $$submit throughput and latency through both faces on the real stack (auto-approved
## requests; BENCHMARKS.md). PA_BENCH_ARGS passes flags (-c, -n, -d).
PA_BENCH_ARGS ?=
.PHONY: bench-priorauth
bench-priorauth: stack-up
	$(GO) run ./test/bench/priorauth $(PA_BENCH_ARGS)

bench-hapi: stack-up bench-kafka
	$(GO) run ./test/bench/load -upstream hapi -rates 25,50 $(BENCH_ARGS)

## faults: fail-closed tests that stop and freeze stack services (fhirwall-proxy, HAPI). They must run after
## the e2e suites, so they also need the `faults` tag: `go test -tags e2e ./test/...` (make e2e) skips them.
.PHONY: faults faults-run
faults: stack-up faults-run
faults-run: $(EVIDENCE_BIN)
	@mkdir -p $(EVIDENCE)
	GO=$(GO) bash test/tools/prometheus/build.sh
	set -o pipefail; $(GO) test -json -tags e2e,faults -count=1 -p 1 -timeout 20m ./test/faults/... 2>&1 | $(EVIDENCE_BIN) tee -json $(EVIDENCE)/faults.json

## helm-test: lint charts/fhirwall and compare `helm template` with test/helm/testdata/golden. helm is built
## from its own module (test/tools/helm) so the main go.mod gains no Kubernetes dependencies.
.PHONY: helm-test
helm-test:
	@[ -x $(STATE)/bin/helm ] || GO=$(GO) bash test/tools/helm/build.sh
	FHIRWALL_REQUIRE_ALL=1 $(GO) test -tags helm -count=1 ./test/helm
