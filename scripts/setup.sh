#!/usr/bin/env bash
# Installs the Debian packages tandem builds against. Idempotent: installs only what is missing,
# and runs `apt-get update` only when something has to be installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  python3 python3-pip python3-venv
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev zlib1g-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libucx-dev
  prometheus libboost1.74-dev libcurl4-openssl-dev libyaml-cpp-dev openssl libxxhash-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # The fuzz targets (scripts/run_fuzzers.sh): clang and its runtime libraries (libFuzzer,
  # AddressSanitizer, UBSan).
  clang libclang-rt-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# `kubectl kustomize` renders deploy/k8s in the tests: Debian's kubernetes-client unless some
# kubectl is already installed.
if ! command -v kubectl >/dev/null; then
  missing+=(kubernetes-client)
fi

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} Debian packages are installed" >&2
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and not root; install them or run as root" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
