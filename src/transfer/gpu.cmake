# GPU KV transports, included from src/transfer/CMakeLists.txt after tandem_transfer is defined:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/gpu.cmake)
#
# tandem_transfer_cuda_ipc_wire: the host-only part (endpoint encoding, control messages, block
# coalescing, framed Unix-socket I/O); built everywhere so its unit tests run without CUDA.
# tandem_transfer_gpu: CudaIpcKvTransport (+ its control channel); only with CUDA. Plain C++
# calling the CUDA runtime/driver APIs: no .cu, no nvcc needed for it.
add_library(tandem_transfer_cuda_ipc_wire ${CMAKE_CURRENT_LIST_DIR}/cuda_ipc_wire.cc)
tandem_target_defaults(tandem_transfer_cuda_ipc_wire)
target_link_libraries(tandem_transfer_cuda_ipc_wire PUBLIC tandem_transfer tandem_common)

if(TANDEM_CUDA_ENABLED)
  add_library(tandem_transfer_gpu ${CMAKE_CURRENT_LIST_DIR}/cuda_ipc_kv_transport.cc)
  tandem_target_defaults(tandem_transfer_gpu)
  target_link_libraries(tandem_transfer_gpu
    PUBLIC tandem_transfer tandem_transfer_cuda_ipc_wire CUDA::cudart)
  # cuda.h types only: the driver is reached through cudaGetDriverEntryPointByVersion, so nothing
  # links libcuda and the binaries load on machines without a driver (GPU tests then skip).
  target_include_directories(tandem_transfer_gpu PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  target_compile_definitions(tandem_transfer_gpu PUBLIC TANDEM_HAVE_GPU_TRANSFER=1)
  # The staged fallback (device -> pinned host -> UCX -> pinned host -> device) needs UCX.
  # (UCX_FOUND in src/transfer's scope; TANDEM_HAVE_UCX where that has been propagated.)
  if(UCX_FOUND OR TANDEM_HAVE_UCX)
    target_sources(tandem_transfer_gpu PRIVATE ${CMAKE_CURRENT_LIST_DIR}/staged_kv_transport.cc)
    target_compile_definitions(tandem_transfer_gpu PUBLIC TANDEM_HAVE_STAGED_TRANSFER=1)
  else()
    target_compile_definitions(tandem_transfer_gpu PUBLIC TANDEM_HAVE_STAGED_TRANSFER=0)
  endif()
endif()
