# Unit tests of the controller's decision core (smoother, classifier, planner, decision log).
tandem_test(controller_core_test
  SOURCES smoother_test.cc classifier_test.cc planner_test.cc decision_log_test.cc
  LIBS tandem_controller_core)
