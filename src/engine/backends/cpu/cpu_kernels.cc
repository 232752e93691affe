#include "engine/backends/cpu/cpu_kernels.h"

#include <cstdlib>
#include <string>

namespace tandem::cpu {

std::string_view IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

bool IsaSupported(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case Isa::kAvx512:
      return IsaSupported(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

Isa BestIsa(std::optional<Isa> cap) {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    if (cap.has_value() && static_cast<int>(isa) > static_cast<int>(*cap)) continue;
    if (IsaSupported(isa)) return isa;
  }
  return Isa::kScalar;
}

const KernelTable& SelectKernels(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return Avx512Kernels();
    case Isa::kAvx2: return Avx2Kernels();
    default: return ScalarKernels();
  }
}

}  // namespace tandem::cpu
