#include "engine/backends/cuda/decode_graph_cache.h"

#include <cuda_runtime_api.h>

#include "common/strings.h"

namespace tandem::cuda {
namespace {

absl::Status GraphError(cudaError_t e, const char* what) {
  return absl::InternalError(StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}

}  // namespace

DecodeGraphCache::~DecodeGraphCache() { Clear(); }

void DecodeGraphCache::Clear() {
  for (auto& [rows, e] : graphs_) {
    if (e.exec != nullptr) cudaGraphExecDestroy(e.exec);
  }
  graphs_.clear();
}

DecodeGraphCache::Mode DecodeGraphCache::Plan(int rows) {
  if (rows <= 0 || rows > max_batch_) return Mode::kEager;
  if (seen_.size() <= static_cast<size_t>(rows)) seen_.resize(rows + 1, false);
  if (!seen_[rows]) {
    seen_[rows] = true;
    return Mode::kWarmUp;
  }
  return Mode::kGraph;
}

absl::Status DecodeGraphCache::Launch(int rows, const std::vector<uint64_t>& signature,
                                      const std::function<void()>& record, cudaStream_t stream) {
  auto it = graphs_.find(rows);
  if (it == graphs_.end() || it->second.signature != signature) {
    if (it != graphs_.end()) {
      cudaGraphExecDestroy(it->second.exec);
      graphs_.erase(it);
    }
    if (cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal); e != cudaSuccess) {
      return GraphError(e, "cudaStreamBeginCapture");
    }
    record();
    cudaGraph_t graph = nullptr;
    if (cudaError_t e = cudaStreamEndCapture(stream, &graph); e != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      return GraphError(e, "cudaStreamEndCapture");
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return GraphError(e, "cudaGraphInstantiate");
    it = graphs_.emplace(rows, Entry{signature, exec}).first;
    ++captures_;
  } else {
    ++replays_;
  }
  if (cudaError_t e = cudaGraphLaunch(it->second.exec, stream); e != cudaSuccess) {
    return GraphError(e, "cudaGraphLaunch");
  }
  return absl::OkStatus();
}

}  // namespace tandem::cuda
