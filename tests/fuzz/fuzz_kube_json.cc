// The Kubernetes actuator's readers of API-server answers (controller/k8s/kube_client.h): the
// Scale object of GET .../deployments/{name}/scale (ParseKubeScale) and the metav1 Status body
// of an error answer (KubeStatusMessage), on any bytes an API server or a proxy in front of it
// might send.
//
// Checked: a Scale that reads has a non-negative replica count and a resourceVersion.
#include <cstddef>
#include <cstdint>
#include <string>

#include "controller/k8s/kube_client.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  const std::string body(reinterpret_cast<const char*>(data), size);
  auto scale = tandem::controller::ParseKubeScale(body);
  if (scale.ok()) {
    FUZZ_CHECK(scale->replicas >= 0);
    FUZZ_CHECK(!scale->resource_version.empty());
  }
  tandem::HttpClientResponse response;
  response.status = 409;
  response.body = body;
  const std::string message = tandem::controller::KubeStatusMessage(response);
  FUZZ_CHECK(!message.empty());
  return 0;
}
