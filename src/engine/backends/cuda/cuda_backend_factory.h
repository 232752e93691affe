// Creating the CUDA backend. This header and its .cc compile with or without CUDA, so that the
// engine and the CLI can offer `--device cuda` unconditionally: in a build without CUDA the
// factory returns Unimplemented.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "tandem/backend.h"

namespace tandem::cuda {

struct CudaBackendOptions {
  int device = 0;            // CUDA device ordinal
  // Capture decode-only iterations as CUDA graphs (one per batch size up to max_graph_batch;
  // see decode_graph_cache.h). Off by default until it has been validated on a GPU.
  bool cuda_graphs = false;
  int max_graph_batch = 256;
  // A graph's decode-attention grid covers this many keys (every replay launches it, blocks past
  // a row's context exit at once); iterations with a longer context run without a graph.
  int graph_max_context = 8192;
};

// True when this binary was built with the CUDA backend.
bool CudaBackendBuilt();

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

}  // namespace tandem::cuda
