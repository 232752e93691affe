#!/usr/bin/env bash
# Builds llama.cpp's own benchmark tools, `llama-bench` and `llama-batched-bench` (the native
# baseline of bench/run_cpu_bench.sh), from the llama.cpp source vendored in the
# llama-cpp-python sdist: the same llama.cpp version the goldens use. Only pip downloads (the
# sdist, no dependencies); the tree is unpacked and built under .cache/llama-tools/.
#
# CPU flags are those of tools/goldens/setup_llama_cpp.sh: AVX2/AVX-512/VNNI named explicitly,
# not -march=native (GGML_NATIVE=OFF), AMX off, because on some virtual machines the CPU
# advertises AMX but the kernel does not enable it and a native build dies with SIGILL.
#
# Idempotent: an existing build of both tools is reused. Prints the bin dir on stdout; progress
# goes to stderr.
#
# --isa avx2 builds without the AVX-512 kernels (in build-avx2/): on some CPUs llama.cpp's AVX2
# kernels are the faster ones, and the benchmark's baseline is the faster build.
#
# usage: tools/goldens/build_llama_tools.sh [--jobs N] [--isa best|avx2]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
LLAMA_CPP_PYTHON_VERSION=0.3.36
dir="${LLAMA_TOOLS_DIR:-$root/.cache/llama-tools}/$LLAMA_CPP_PYTHON_VERSION"
targets=(llama-bench llama-batched-bench)
jobs="$(nproc)"
isa=best
while (($#)); do
  case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    --isa) isa="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--jobs N] [--isa best|avx2]" >&2; exit 2 ;;
  esac
done
flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
# The kernel calls the flag avx512_vnni (setup_llama_cpp.sh's `avx512vnni` never matches it).
[[ "$isa" == best || "$isa" == avx2 ]] || { echo "--isa must be best or avx2, not '$isa'" >&2; exit 2; }
if [[ "$isa" == best ]] && grep -Eq '\bavx512_?vnni\b' /proc/cpuinfo; then
  flags+=(-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON)
  grep -q avx512vbmi /proc/cpuinfo && flags+=(-DGGML_AVX512_VBMI=ON)
  grep -q avx512_bf16 /proc/cpuinfo && flags+=(-DGGML_AVX512_BF16=ON)
fi
grep -q avx_vnni /proc/cpuinfo && flags+=(-DGGML_AVX_VNNI=ON)
flags+=(-DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF)
build_dir="$dir/build"
[[ "$isa" == best ]] || build_dir="$dir/build-$isa"
bin="$build_dir/bin"
stamp="$build_dir/tandem-cpu-flags"  # a build for other CPU flags is redone
ready=1
for t in "${targets[@]}"; do [[ -x "$bin/$t" ]] || ready=0; done
[[ -f "$stamp" && "$(cat "$stamp")" == "${flags[*]}" ]] || ready=0
if ((ready)); then
  echo "llama.cpp tools from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION are built" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
if [[ ! -f "$dir/src/CMakeLists.txt" ]]; then
  pip=(python3 -m pip)
  [[ -x "$root/.venv-goldens/bin/pip" ]] && pip=("$root/.venv-goldens/bin/pip")
  echo "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist with pip" >&2
  # --no-binary only for this package: its build backend may still come as a wheel (pip
  # prepares the sdist's metadata).
  "${pip[@]}" download --no-deps --no-binary llama-cpp-python --dest "$dir/sdist" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
  rm -rf "$dir/unpack" "$dir/src"
  mkdir -p "$dir/unpack"
  tar -xzf "$dir"/sdist/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION".tar.gz -C "$dir/unpack"
  mv "$dir"/unpack/llama_cpp_python-*/vendor/llama.cpp "$dir/src"
  rm -rf "$dir/unpack"
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
echo "configuring llama.cpp (${flags[*]})" >&2
# Both tools live under tools/ in this llama.cpp version (LLAMA_BUILD_TOOLS); examples, tests,
# the server and the unified app are not needed, nor any network code (LLAMA_CURL is
# deprecated there, HTTPS is LLAMA_OPENSSL).
cmake -S "$dir/src" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
  -DBUILD_SHARED_LIBS=OFF "${flags[@]}" >&2
echo "building ${targets[*]} with $jobs jobs; this takes several minutes" >&2
start=$SECONDS
cmake --build "$build_dir" --target "${targets[@]}" -j "$jobs" >&2
echo "${flags[*]}" >"$stamp"
echo "built in $((SECONDS - start)) s" >&2
echo "$bin"
