# The controller's decision core: signal smoothing, traffic classification, the capacity
# planner and the decision log. Pure logic (no clocks, no network), unit-tested on its own.
add_library(tandem_controller_core
  smoother.cc
  classifier.cc
  planner.cc
  decision_log.cc
)
tandem_target_defaults(tandem_controller_core)
target_link_libraries(tandem_controller_core PUBLIC tandem_common nlohmann_json::nlohmann_json)
