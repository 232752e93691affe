#!/usr/bin/env bash
# Creates .venv-goldens with the independent reference implementation used for the goldens and
# the CPU benchmark: llama.cpp through llama-cpp-python (built from source here), plus the
# `gguf` package and jinja2.
#
# llama.cpp is built for AVX2/AVX-512/VNNI explicitly, not with -march=native: on some virtual
# machines the CPU advertises AMX but the kernel does not enable it, and a native build then
# dies with SIGILL. Idempotent: does nothing when the venv already has the pinned versions.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${GOLDENS_VENV:-$root/.venv-goldens}"
LLAMA_CPP_PYTHON_VERSION=0.3.36
GGUF_VERSION=0.19.0

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m
assert m.version("llama-cpp-python") == "$LLAMA_CPP_PYTHON_VERSION"
assert m.version("gguf") == "$GGUF_VERSION"
PY
then
  echo "$venv is ready" >&2
  exit 0
fi

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
if grep -Eq '\bavx512_?vnni\b' /proc/cpuinfo; then  # the kernel spells it avx512_vnni
  flags="$flags -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON"
  grep -q avx512vbmi /proc/cpuinfo && flags="$flags -DGGML_AVX512_VBMI=ON"
  grep -q avx512_bf16 /proc/cpuinfo && flags="$flags -DGGML_AVX512_BF16=ON"
fi
grep -q avx_vnni /proc/cpuinfo && flags="$flags -DGGML_AVX_VNNI=ON"
flags="$flags -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF"
echo "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION ($flags); this takes several minutes" >&2
CMAKE_ARGS="$flags" MAKEFLAGS="-j$(nproc)" "$venv/bin/pip" install --no-cache-dir \
  "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" "gguf==$GGUF_VERSION" numpy jinja2
echo "$venv is ready" >&2
