# The Kubernetes actuator against fake_apiserver.py (python3 + the openssl CLI; skipped without
# them unless TANDEM_REQUIRE_E2E=1).
tandem_test(controller_k8s_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/k8s_actuator_test.cc
  LIBS tandem_controller_k8s tandem_common nlohmann_json::nlohmann_json)
