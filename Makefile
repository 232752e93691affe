# The two commands a fresh machine needs: `make up` and `make test`. Both do all set-up first
# (Debian packages, the build, the bundled model), and running them again skips what is done.

BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
PROMPT     ?= What are three good habits for writing maintainable code? Answer briefly.
TANDEM     := $(BUILD_DIR)/tandem

FUZZ_SECONDS ?= 600
IMAGE      ?= tandem:latest

.PHONY: all setup configure build model test test-venv fuzz fuzz-long test-asan up demo bench image test-image clean help

all: build

help:
	@echo "make up     set up, build, fetch the bundled model and run the local cluster (router, 1 prefill, 1 decode)"
	@echo "            on http://127.0.0.1:8000/v1 (UP_ARGS=... passes flags to tandem up; see tandem up --help)"
	@echo "make demo   one prompt through the engine in this process (PROMPT=...)"
	@echo "make test   set up, build, fetch the bundled model, make the test venv and run every test"
	@echo "make build  configure and build only ($(BUILD_DIR)/, CMAKE_ARGS=... to pass options)"
	@echo "make fuzz   build the libFuzzer targets with clang (build-fuzz/) and run each for 60 s (part of make test);"
	@echo "            make fuzz-long FUZZ_SECONDS=3600 for longer runs (crash inputs: build-fuzz/crashes/)"
	@echo "make test-asan  the C++ unit and serving tests under AddressSanitizer + UBSan (build-asan/; slow, not in make test)"
	@echo "make bench  CPU benchmark against llama.cpp's llama-bench and llama-batched-bench (builds them first; slow)"
	@echo "make image  the container image $(IMAGE) with podman (Dockerfile; CPU only, bundled model inside)"
	@echo "make test-image  tandem up in that image: a chat completion as its own user, then the OpenAI-client e2e tests"

setup:
	@scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS) > /dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

model: build
	@$(TANDEM) model fetch > /dev/null

test-venv:
	@scripts/setup_test_venv.sh

# The parsers of network and file input under libFuzzer, 60 s each, two at a time (tests/fuzz/).
fuzz: setup
	scripts/run_fuzzers.sh 60 2

fuzz-long: setup
	scripts/run_fuzzers.sh $(FUZZ_SECONDS) 2

# The C++ unit and serving tests (label `unit`: every gtest, the in-process clusters included)
# built with AddressSanitizer + UBSan in build-asan/ (CPU only, no benchmarks). Not part of
# `make test`: on two cores it takes longer than CI allows. ASAN_LABELS (ctest -L) and
# ASAN_TESTS (ctest -R, a regular expression) choose a part, e.g. ASAN_TESTS='Transfer|Router'.
ASAN_DIR    ?= build-asan
ASAN_LABELS ?= unit|model
ASAN_TESTS  ?=
test-asan: model
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_SANITIZE=address \
	  -DTANDEM_CUDA=OFF -DTANDEM_BUILD_BENCH=OFF $(CMAKE_ARGS) > /dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  TANDEM_MODEL="$$($(TANDEM) model fetch)" TANDEM_REQUIRE_MODEL=1 \
	  ctest --test-dir $(ASAN_DIR) --output-on-failure -j $(JOBS) -L '$(ASAN_LABELS)' \
	  $(if $(ASAN_TESTS),-R '$(ASAN_TESTS)') --timeout 1800

test: model test-venv fuzz
	TANDEM_MODEL="$$($(TANDEM) model fetch)" TANDEM_REQUIRE_MODEL=1 TANDEM_REQUIRE_E2E=1 \
	  ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

up: model
	$(TANDEM) up $(UP_ARGS)

demo: model
	$(TANDEM) generate --chat --max-tokens 200 --prompt "$(PROMPT)"

bench: model
	bench/run_cpu_bench.sh

# The container image (Dockerfile) and its test; podman, runc and mmdebstrap are installed when
# missing. Not part of `make test`: the image build compiles tandem again (see docs/operators.md).
# Both need only the host's tandem binary (to fetch the bundled model), not the whole build.
image: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target tandem
	scripts/build_image.sh --image $(IMAGE) --tandem $(TANDEM)

test-image: configure test-venv
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target tandem
	scripts/test_image.sh --image $(IMAGE) --tandem $(TANDEM)

clean:
	rm -rf $(BUILD_DIR)
