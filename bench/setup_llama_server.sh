#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the real CPU peer for `bench/compare.py`) from the llama.cpp
# source vendored in the llama-cpp-python sdist on PyPI (the same version the goldens and the CPU
# benchmark use), with the same CPU flags as tools/goldens/setup_llama_cpp.sh. Prints the binary's
# path. Idempotent: an existing build of that version is reused. --target builds another of
# llama.cpp's tools from the same tree instead (llama-perplexity, llama-quantize: the perplexity
# goldens).
#
# usage: bench/setup_llama_server.sh [--jobs N] [--target NAME]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
LLAMA_CPP_PYTHON_VERSION=0.3.36
dir="${LLAMA_SERVER_DIR:-$root/.llama-server}/$LLAMA_CPP_PYTHON_VERSION"
jobs="$(nproc)"
target=llama-server
while (($#)); do
  case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    *) echo "usage: $0 [--jobs N] [--target NAME]" >&2; exit 2 ;;
  esac
done
bin="$dir/build/bin/$target"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$dir"
if [[ ! -d "$dir/src" ]]; then
  echo "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist" >&2
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --dest "$dir/sdist" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  tar -xzf "$dir"/sdist/llama_cpp_python-*.tar.gz -C "$dir"
  mv "$dir"/llama_cpp_python-*/vendor/llama.cpp "$dir/src"
fi
flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
if grep -Eq '\bavx512_?vnni\b' /proc/cpuinfo; then  # the kernel spells it avx512_vnni
  flags+=(-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON)
  grep -q avx512vbmi /proc/cpuinfo && flags+=(-DGGML_AVX512_VBMI=ON)
  grep -q avx512_bf16 /proc/cpuinfo && flags+=(-DGGML_AVX512_BF16=ON)
fi
grep -q avx_vnni /proc/cpuinfo && flags+=(-DGGML_AVX_VNNI=ON)
flags+=(-DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF)
echo "building $target (${flags[*]}); this takes several minutes" >&2
cmake -S "$dir/src" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON "${flags[@]}" >&2
cmake --build "$dir/build" --target "$target" -j "$jobs" >&2
echo "$bin"
