# The control loop, the router admin client and the local and role-change actuators.
add_library(tandem_controller
  admin_client.cc
  controller.cc
  daemon.cc
  local_actuator.cc
  role_change_actuator.cc
)
tandem_target_defaults(tandem_controller)
target_link_libraries(tandem_controller PUBLIC tandem_controller_core tandem_controller_sources
                      tandem_controller_k8s tandem_metrics tandem_http tandem_http_ops tandem_proto tandem_rpc gRPC::grpc++ absl::time)
