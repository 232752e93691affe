// Reading the API server's answers (ParseKubeScale, KubeStatusMessage) on inputs that crashed
// or misled them under tests/fuzz/fuzz_kube_json.cc: bytes from the network must give an error,
// never an exception or a wrapped count.
#include <string>

#include "controller/k8s/kube_client.h"
#include "gtest/gtest.h"

namespace tandem::controller {
namespace {

HttpClientResponse Answer(std::string body) {
  HttpClientResponse r;
  r.status = 409;
  r.body = std::move(body);
  return r;
}

TEST(KubeJsonTest, ScaleReads) {
  auto scale = ParseKubeScale(
      R"({"kind":"Scale","metadata":{"resourceVersion":"42"},"spec":{"replicas":3}})");
  ASSERT_TRUE(scale.ok()) << scale.status();
  EXPECT_EQ(scale->replicas, 3);
  EXPECT_EQ(scale->resource_version, "42");
  auto zero = ParseKubeScale(R"({"kind":"Scale","metadata":{"resourceVersion":"7"},"spec":{}})");
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->replicas, 0);  // omitted when 0
}

// Fuzzer finding: nlohmann's value("kind", "") threw type_error.302 on a non-string kind, which
// terminated the controller.
TEST(KubeJsonTest, MembersOfAnotherTypeAreAnErrorNotAnException) {
  for (const char* body : {R"({"kind":{"rAsourceVersion":11},"spec":{"replicas":"3"}})",
                           R"({"kind":5})",
                           R"({"kind":"Scale","metadata":{"resourceVersion":{}}})",
                           R"({"kind":"Scale","metadata":[],"spec":{"replicas":1}})",
                           R"({"kind":"Scale","metadata":{"resourceVersion":"1"},"spec":{"replicas":null}})",
                           R"([1,2])", "not json", ""}) {
    EXPECT_FALSE(ParseKubeScale(body).ok()) << body;
  }
  EXPECT_EQ(KubeStatusMessage(Answer(R"({"kind":[],"message":"m"})")), R"({"kind":[],"message":"m"})");
  EXPECT_EQ(KubeStatusMessage(Answer(R"({"kind":"Status","message":7})")), R"({"kind":"Status","message":7})");
}

// Found writing the fuzz target: a replica count past int32 was narrowed to a negative int.
TEST(KubeJsonTest, ReplicasPastInt32AreRefused) {
  EXPECT_FALSE(ParseKubeScale(R"({"kind":"Scale","metadata":{"resourceVersion":"1"},"spec":{"replicas":4294967295}})").ok());
  EXPECT_FALSE(ParseKubeScale(R"({"kind":"Scale","metadata":{"resourceVersion":"1"},"spec":{"replicas":-1}})").ok());
  auto max = ParseKubeScale(R"({"kind":"Scale","metadata":{"resourceVersion":"1"},"spec":{"replicas":2147483647}})");
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->replicas, 2147483647);
}

// Fuzzer finding: a Status with an empty message gave an empty error text ("HTTP 409: ").
TEST(KubeJsonTest, StatusWithoutMessageShowsTheBody) {
  const std::string body = R"({"kind":"Status","apiVersion":"v2","message":"","reason":"NotFound","code":807})";
  EXPECT_EQ(KubeStatusMessage(Answer(body)), body);
  EXPECT_EQ(KubeStatusMessage(Answer(R"({"kind":"Status","message":"deployments.apps \"x\" not found"})")),
            "deployments.apps \"x\" not found");
  EXPECT_EQ(KubeStatusMessage(Answer("")), "(empty body)");
}

}  // namespace
}  // namespace tandem::controller
