# The Kubernetes actuator: API access config (in-cluster service account or kubeconfig) and the
# scale-subresource actuator.
find_package(yaml-cpp REQUIRED)
add_library(tandem_controller_k8s
  ${CMAKE_CURRENT_LIST_DIR}/k8s_actuator.cc
  ${CMAKE_CURRENT_LIST_DIR}/kube_client.cc
)
tandem_target_defaults(tandem_controller_k8s)
target_link_libraries(tandem_controller_k8s
  PUBLIC tandem_common absl::synchronization absl::time
  PRIVATE nlohmann_json::nlohmann_json yaml-cpp)
