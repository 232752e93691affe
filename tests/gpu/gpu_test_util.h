// Helpers for the GPU tests: skipping without a device, and small device arrays.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tandem::testing {

inline bool GpuAvailable() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

inline bool GpuRequired() {
  const char* v = std::getenv("TANDEM_REQUIRE_GPU");
  return v != nullptr && std::string(v) == "1";
}

// A device array of T, freed with the object; copies to and from host vectors.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
  }
  explicit DeviceArray(const std::vector<T>& v) : DeviceArray(v.size()) { Put(v); }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return static_cast<T*>(p_); }
  size_t size() const { return n_; }
  void Put(const std::vector<T>& v) {
    EXPECT_EQ(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> Get() const {
    std::vector<T> v(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  // Fills every byte with `byte` (poison before a kernel writes, to catch unwritten outputs).
  void Poison(unsigned char byte = 0xff) { EXPECT_EQ(cudaMemset(p_, byte, n_ * sizeof(T)), cudaSuccess); }

 private:
  void* p_ = nullptr;
  size_t n_;
};

}  // namespace tandem::testing

// Skips the test without a CUDA device, or fails it when TANDEM_REQUIRE_GPU=1.
#define TANDEM_GPU_OR_SKIP()                                                                 \
  do {                                                                                       \
    if (!::tandem::testing::GpuAvailable()) {                                                \
      if (::tandem::testing::GpuRequired()) {                                                \
        FAIL() << "no CUDA device found (cudaGetDeviceCount) but TANDEM_REQUIRE_GPU=1";      \
      }                                                                                      \
      GTEST_SKIP() << "no CUDA device found (cudaGetDeviceCount reports none); "             \
                      "set TANDEM_REQUIRE_GPU=1 to make this a failure";                     \
    }                                                                                        \
  } while (0)
