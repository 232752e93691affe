// KubernetesActuator and its access config against fake_apiserver.py: a TLS API server with its
// own CA (made here with the openssl CLI), bearer tokens, the scale subresource of two
// Deployments, a request log and fault injection.
#include "controller/k8s/k8s_actuator.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/child_process.h"
#include "common/http_client.h"
#include "common/strings.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "unit/controller/k8s/fake_apiserver_fixture.h"

namespace tandem::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;
using k8s_testing::kDecode;
using k8s_testing::kNamespace;
using k8s_testing::kPrefill;
using k8s_testing::kReaderToken;
using k8s_testing::kToken;
using k8s_testing::E2eRequired;
using k8s_testing::ReadWholeFile;
using k8s_testing::ReplaceFile;
using k8s_testing::WriteFile;

class KubernetesActuatorTest : public k8s_testing::FakeApiServerTest {
 protected:
  KubernetesActuatorOptions Options() {
    KubernetesActuatorOptions options;
    options.kube_namespace = kNamespace;
    options.prefill_deployment = kPrefill;
    options.decode_deployment = kDecode;
    options.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
    return options;
  }

  std::unique_ptr<KubernetesActuator> Make(KubeConfig config, KubernetesActuatorOptions options) {
    auto actuator = KubernetesActuator::Create(std::move(config), std::move(options));
    EXPECT_TRUE(actuator.ok()) << actuator.status();
    return actuator.ok() ? std::move(*actuator) : nullptr;
  }
  std::unique_ptr<KubernetesActuator> Make() { return Make(Config(), Options()); }

  // A service-account directory as the kubelet mounts it.
  std::string ServiceAccountDir(const std::string& token) {
    const std::string sa = Path("serviceaccount");
    std::filesystem::create_directories(sa);
    WriteFile(sa + "/token", token + "\n");
    std::filesystem::copy_file(Path("ca.crt"), sa + "/ca.crt", std::filesystem::copy_options::overwrite_existing);
    WriteFile(sa + "/namespace", kNamespace);
    return sa;
  }

  // In a pod: the service account directory `sa` and the fake API server's address as
  // KUBERNETES_SERVICE_HOST/PORT would give it.
  KubeConfigOptions InPod(const std::string& sa) const {
    KubeConfigOptions where;
    where.service_account_dir = sa;
    where.service_host = "127.0.0.1";
    where.service_port = std::to_string(port_);
    return where;
  }

  std::vector<absl::Duration> sleeps_;
};

// --- access config ----------------------------------------------------------------------------

TEST_F(KubernetesActuatorTest, InClusterConfigUsesServiceAccountTokenCaAndNamespace) {
  const std::string sa = ServiceAccountDir(kToken);
  auto config = LoadKubeConfig(InPod(sa));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, Server());
  EXPECT_EQ(config->default_namespace, kNamespace);

  KubernetesActuatorOptions options = Options();
  options.kube_namespace = "";  // from the pod's namespace file
  auto actuator = Make(*config, options);
  ASSERT_NE(actuator, nullptr);
  EXPECT_EQ(actuator->kube_namespace(), kNamespace);
  auto current = actuator->Current();
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(*current, (InstanceCounts{2, 3}));
  EXPECT_EQ(Log()[0]["token"], kToken);
}

TEST_F(KubernetesActuatorTest, InClusterConfigErrorsSayWhatIsMissing) {
  KubeConfigOptions outside_a_pod;
  outside_a_pod.service_account_dir = ServiceAccountDir(kToken);
  auto outside = LoadInClusterConfig(outside_a_pod);
  ASSERT_FALSE(outside.ok());
  EXPECT_THAT(std::string(outside.status().message()), HasSubstr("--kubeconfig"));

  auto no_token = LoadInClusterConfig(InPod(Path("no-such-dir")));
  ASSERT_FALSE(no_token.ok());
  EXPECT_THAT(std::string(no_token.status().message()), HasSubstr("automountServiceAccountToken"));
}

TEST_F(KubernetesActuatorTest, KubeconfigWithInlineCaDataAndNamedContext) {
  const std::string ca_data = absl::Base64Escape(ReadWholeFile(Path("ca.crt")));
  WriteFile(Path("kubeconfig"), StrCat(R"(apiVersion: v1
kind: Config
current-context: elsewhere
clusters:
- name: unreachable
  cluster:
    server: https://127.0.0.1:1
- name: fake
  cluster:
    server: )", Server(), R"(
    certificate-authority-data: )", ca_data, R"(
contexts:
- name: elsewhere
  context: {cluster: unreachable, user: nobody}
- name: test
  context: {cluster: fake, user: ci, namespace: team-a}
users:
- name: nobody
  user: {token: nope}
- name: ci
  user: {token: good-token}
)"));
  auto current_context = LoadKubeconfigFile(Path("kubeconfig"));
  ASSERT_TRUE(current_context.ok()) << current_context.status();
  EXPECT_EQ(current_context->server, "https://127.0.0.1:1");

  KubeConfigOptions where;
  where.kubeconfig_path = Path("kubeconfig");
  where.context = "test";
  auto config = LoadKubeConfig(where);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->default_namespace, kNamespace);
  const std::string ca_file = config->ca_file;
  ASSERT_FALSE(ca_file.empty());
  struct stat st;
  ASSERT_EQ(::stat(ca_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the decoded CA file must be private";

  auto actuator = Make(*config, Options());
  ASSERT_NE(actuator, nullptr);
  auto current = actuator->Current();
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(*current, (InstanceCounts{2, 3}));

  config = absl::InternalError("dropped");
  current_context = absl::InternalError("dropped");
  EXPECT_EQ(::access(ca_file.c_str(), F_OK), 0) << "the actuator still uses it";
  actuator.reset();
  EXPECT_NE(::access(ca_file.c_str(), F_OK), 0) << "the temporary CA file outlived its config";
}

TEST_F(KubernetesActuatorTest, KubeconfigWithCaFileAndTokenFileRelativeToIt) {
  std::filesystem::create_directories(Path("kube"));
  std::filesystem::copy_file(Path("ca.crt"), Path("kube/cluster-ca.crt"));
  WriteFile(Path("kube/sa-token"), StrCat(kToken, "\n"));
  WriteFile(Path("kube/config"), StrCat(R"(apiVersion: v1
kind: Config
current-context: test
clusters:
- name: fake
  cluster:
    server: )", Server(), R"(/
    certificate-authority: cluster-ca.crt
contexts:
- name: test
  context: {cluster: fake, user: ci}
users:
- name: ci
  user:
    token: stale-inline-token
    tokenFile: sa-token
)"));
  KubeConfigOptions where;
  where.kubeconfig_path = Path("kube/config");
  auto config = LoadKubeConfig(where);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca_file, Path("kube/cluster-ca.crt"));
  EXPECT_EQ(config->token_file, Path("kube/sa-token"));

  auto actuator = Make(*config, Options());
  ASSERT_NE(actuator, nullptr);
  auto current = actuator->Current();
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(*current, (InstanceCounts{2, 3}));
  EXPECT_EQ(Log()[0]["token"], kToken) << "tokenFile takes precedence over token";
}

TEST_F(KubernetesActuatorTest, KubeconfigErrorsAreClear) {
  const auto error_of = [&](const std::string& text, const std::string& context = "") {
    WriteFile(Path("bad-kubeconfig"), text);
    auto config = LoadKubeconfigFile(Path("bad-kubeconfig"), context);
    EXPECT_FALSE(config.ok());
    return config.ok() ? std::string() : std::string(config.status().message());
  };
  const std::string good_cluster = StrCat("clusters:\n- name: c\n  cluster: {server: ", Server(), "}\n");
  const std::string contexts = "contexts:\n- name: x\n  context: {cluster: c, user: u}\n";
  EXPECT_THAT(error_of(good_cluster + contexts + "users:\n- name: u\n  user: {token: t}\n", "nope"),
              HasSubstr("no context named \"nope\""));
  EXPECT_THAT(error_of(good_cluster + contexts + "users:\n- name: u\n  user: {token: t}\n"),
              HasSubstr("no current-context"));
  EXPECT_THAT(error_of(good_cluster + contexts +
                       "users:\n- name: u\n  user: {client-certificate-data: AAAA, client-key-data: AAAA}\n",
                       "x"),
              HasSubstr("client certificate"));
  EXPECT_THAT(error_of("clusters:\n- name: c\n  cluster: {certificate-authority-data: AAAA}\n" + contexts, "x"),
              HasSubstr("no `server`"));
  EXPECT_THAT(error_of(StrCat("clusters:\n- name: c\n  cluster: {server: ", Server(),
                              ", certificate-authority-data: '!!notbase64'}\n", contexts),
                       "x"),
              HasSubstr("certificate-authority-data"));
  EXPECT_THAT(error_of("clusters: [unclosed"), HasSubstr("not valid"));
  auto missing = LoadKubeconfigFile(Path("does-not-exist"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(Path("does-not-exist")));
}

TEST_F(KubernetesActuatorTest, InvalidNamesAreRefusedBeforeAnyRequest) {
  KubernetesActuatorOptions options = Options();
  options.kube_namespace = "Team_A";
  EXPECT_FALSE(KubernetesActuator::Create(Config(), options).ok());
  options = Options();
  options.decode_deployment = "";
  EXPECT_FALSE(KubernetesActuator::Create(Config(), options).ok());
  options = Options();
  options.prefill_deployment = "../../secrets";
  EXPECT_FALSE(KubernetesActuator::Create(Config(), options).ok());
  EXPECT_THAT(Log(), IsEmpty());
}

// --- reading and scaling ------------------------------------------------------------------------

TEST_F(KubernetesActuatorTest, CurrentReadsSpecReplicasOfBothDeployments) {
  auto actuator = Make();
  auto current = actuator->Current();
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(*current, (InstanceCounts{2, 3}));

  // Scaled to zero elsewhere: the apiserver omits spec.replicas, which means 0.
  Hook("POST", "set", {{"namespace", kNamespace}, {"name", kPrefill}, {"replicas", 0}});
  current = actuator->Current();
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(*current, (InstanceCounts{0, 3}));
}

TEST_F(KubernetesActuatorTest, ApplyWritesOnlyTheDeploymentsThatDiffer) {
  auto actuator = Make();
  ASSERT_TRUE(actuator->Apply({2, 5}).ok());
  json writes = WritesIn(Log());
  ASSERT_EQ(writes.size(), 1u) << writes.dump();
  EXPECT_EQ(writes[0]["path"], StrCat("/apis/apps/v1/namespaces/team-a/deployments/", kDecode, "/scale"));
  EXPECT_EQ(writes[0]["method"], "PATCH");
  EXPECT_EQ(writes[0]["content_type"], "application/merge-patch+json");
  EXPECT_EQ(writes[0]["replicas"], 5);
  EXPECT_FALSE(writes[0]["resource_version"].is_null()) << "writes must carry the resourceVersion read";
  EXPECT_EQ(Replicas(kDecode), 5);
  EXPECT_EQ(Replicas(kPrefill), 2);

  ClearLog();
  ASSERT_TRUE(actuator->Apply({1, 5}).ok());  // scale in
  writes = WritesIn(Log());
  ASSERT_EQ(writes.size(), 1u) << writes.dump();
  EXPECT_THAT(writes[0]["path"].get<std::string>(), HasSubstr(kPrefill));
  EXPECT_EQ(Replicas(kPrefill), 1);

  ClearLog();
  ASSERT_TRUE(actuator->Apply({4, 0}).ok());  // both move: the growing one is written first
  writes = WritesIn(Log());
  ASSERT_EQ(writes.size(), 2u) << writes.dump();
  EXPECT_THAT(writes[0]["path"].get<std::string>(), HasSubstr(kPrefill));
  EXPECT_THAT(writes[1]["path"].get<std::string>(), HasSubstr(kDecode));
  auto current = actuator->Current();
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(*current, (InstanceCounts{4, 0}));
}

TEST_F(KubernetesActuatorTest, ApplyingTheSameTargetTwiceWritesOnce) {
  auto actuator = Make();
  ASSERT_TRUE(actuator->Apply({3, 3}).ok());
  EXPECT_EQ(WritesIn(Log()).size(), 1u);
  ClearLog();
  ASSERT_TRUE(actuator->Apply({3, 3}).ok());
  const json log = Log();
  EXPECT_THAT(WritesIn(log), IsEmpty()) << log.dump();
  EXPECT_EQ(log.size(), 2u) << "one read per Deployment";
}

TEST_F(KubernetesActuatorTest, ConflictRereadsAndWritesWithTheNewResourceVersion) {
  auto actuator = Make();
  Hook("POST", "conflicts", {{"count", 1}});  // another writer touches decode before our write
  ASSERT_TRUE(actuator->Apply({2, 6}).ok());
  const json log = Log();
  const json writes = WritesIn(log);
  ASSERT_EQ(writes.size(), 2u) << log.dump();
  EXPECT_EQ(writes[0]["status"], 409);
  EXPECT_EQ(writes[1]["status"], 200);
  EXPECT_NE(writes[0]["resource_version"], writes[1]["resource_version"]);
  EXPECT_EQ(Replicas(kDecode), 6);
}

TEST_F(KubernetesActuatorTest, ConflictFromAWriterThatAlreadySetTheTargetEndsWithoutRewriting) {
  auto actuator = Make();
  Hook("POST", "conflicts", {{"count", 1}, {"replicas", 7}});
  ASSERT_TRUE(actuator->Apply({2, 7}).ok());
  const json writes = WritesIn(Log());
  ASSERT_EQ(writes.size(), 1u) << writes.dump();
  EXPECT_EQ(writes[0]["status"], 409);
  EXPECT_EQ(Replicas(kDecode), 7);
}

TEST_F(KubernetesActuatorTest, EndlessConflictsGiveUpAfterBoundedRounds) {
  KubernetesActuatorOptions options = Options();
  options.max_conflict_retries = 2;
  auto actuator = Make(Config(), options);
  Hook("POST", "conflicts", {{"count", 100}});
  const absl::Status status = actuator->Apply({2, 9});
  EXPECT_TRUE(absl::IsAborted(status)) << status;
  EXPECT_EQ(WritesIn(Log()).size(), 3u);
}

// --- retries ----------------------------------------------------------------------------------------

TEST_F(KubernetesActuatorTest, ThrottlingIsRetriedAfterRetryAfter) {
  auto actuator = Make();
  Hook("POST", "faults", {{"status", 429}, {"count", 2}, {"retry_after", 1}});
  ASSERT_TRUE(actuator->Apply({4, 3}).ok());
  EXPECT_EQ(Replicas(kPrefill), 4);
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_EQ(sleeps_[0], absl::Seconds(1));
  EXPECT_EQ(sleeps_[1], absl::Seconds(1));
}

TEST_F(KubernetesActuatorTest, ALongRetryAfterIsCapped) {
  KubernetesActuatorOptions options = Options();
  options.max_retry_after = absl::Seconds(3);
  auto actuator = Make(Config(), options);
  Hook("POST", "faults", {{"status", 429}, {"count", 1}, {"retry_after", 3600}});
  ASSERT_TRUE(actuator->Current().ok());
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_EQ(sleeps_[0], absl::Seconds(3));
}

TEST_F(KubernetesActuatorTest, ServerErrorsAreRetriedWithExponentialBackoff) {
  auto actuator = Make();
  Hook("POST", "faults", {{"status", 500}, {"count", 3}});
  ASSERT_TRUE(actuator->Apply({2, 1}).ok());
  EXPECT_EQ(Replicas(kDecode), 1);
  ASSERT_EQ(sleeps_.size(), 3u);
  EXPECT_EQ(sleeps_[0], absl::Milliseconds(250));
  EXPECT_EQ(sleeps_[1], absl::Milliseconds(500));
  EXPECT_EQ(sleeps_[2], absl::Milliseconds(1000));
}

TEST_F(KubernetesActuatorTest, PersistentServerErrorsFailAfterBoundedAttemptsAndTime) {
  KubernetesActuatorOptions options = Options();
  options.sleep = nullptr;  // really wait
  options.max_attempts = 4;
  options.initial_backoff = absl::Milliseconds(50);
  auto actuator = Make(Config(), options);
  Hook("POST", "faults", {{"status", 500}, {"count", 1000}});
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = actuator->Apply({5, 5});
  const double elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("gave up after 4 attempts"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("HTTP 500"));
  EXPECT_EQ(Log().size(), 4u);
  EXPECT_GE(elapsed_s, 0.35);  // 50 + 100 + 200 ms of backoff
  EXPECT_LT(elapsed_s, 5.0);
}

// --- refusals: a clear error, no retries ------------------------------------------------------------

TEST_F(KubernetesActuatorTest, RefusedTokenIsReportedWithoutRetrying) {
  auto actuator = Make(Config("expired-token"), Options());
  auto current = actuator->Current();
  ASSERT_FALSE(current.ok());
  EXPECT_TRUE(absl::IsUnauthenticated(current.status())) << current.status();
  EXPECT_THAT(std::string(current.status().message()), HasSubstr("refused"));
  EXPECT_THAT(std::string(current.status().message()), HasSubstr("401"));
  EXPECT_EQ(Log().size(), 1u);
  EXPECT_THAT(sleeps_, IsEmpty());
}

TEST_F(KubernetesActuatorTest, ForbiddenWriteNamesTheRbacPermissionNeeded) {
  auto actuator = Make(Config(kReaderToken), Options());
  ASSERT_TRUE(actuator->Current().ok()) << "the reader may get";
  ClearLog();
  const absl::Status status = actuator->Apply({5, 3});
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr("`patch` on deployments/scale"));
  EXPECT_THAT(message, HasSubstr("namespace team-a"));
  EXPECT_EQ(WritesIn(Log()).size(), 1u);
  EXPECT_THAT(sleeps_, IsEmpty());
  EXPECT_EQ(Replicas(kPrefill), 2);
}

TEST_F(KubernetesActuatorTest, MissingDeploymentOrNamespaceIsNamed) {
  KubernetesActuatorOptions options = Options();
  options.decode_deployment = "llm-decodee";
  auto actuator = Make(Config(), options);
  auto current = actuator->Current();
  ASSERT_FALSE(current.ok());
  EXPECT_TRUE(absl::IsNotFound(current.status())) << current.status();
  EXPECT_THAT(std::string(current.status().message()),
              HasSubstr("Deployment \"llm-decodee\" not found in namespace \"team-a\""));
  EXPECT_EQ(Log().size(), 2u);

  options = Options();
  options.kube_namespace = "team-b";
  actuator = Make(Config(), options);
  const absl::Status status = actuator->Apply({1, 1});
  EXPECT_TRUE(absl::IsNotFound(status)) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("namespace \"team-b\""));
  EXPECT_THAT(sleeps_, IsEmpty());
}

// --- TLS and credentials over time ---------------------------------------------------------------------

TEST_F(KubernetesActuatorTest, ServerCertificateFromAnotherCaIsRefused) {
  KubeConfig config = Config();
  config.ca_file = Path("other-ca.crt");
  auto actuator = Make(config, Options());
  auto current = actuator->Current();
  ASSERT_FALSE(current.ok());
  EXPECT_THAT(std::string(current.status().message()), HasSubstr("not trusted"));
  EXPECT_THAT(Log(), IsEmpty()) << "no request may reach an unverified server";
}

TEST_F(KubernetesActuatorTest, RotatedTokenFileIsPickedUp) {
  const std::string sa = ServiceAccountDir("token-v1");
  Hook("POST", "tokens", {{"tokens", {"token-v1"}}});
  auto config = LoadInClusterConfig(InPod(sa));
  ASSERT_TRUE(config.ok()) << config.status();
  auto actuator = Make(*config, Options());
  ASSERT_TRUE(actuator->Current().ok());

  // The kubelet rotates the projected token and the old one stops being accepted.
  Hook("POST", "tokens", {{"tokens", {"token-v2"}}});
  ReplaceFile(sa + "/token", "token-v2\n");
  ClearLog();
  auto current = actuator->Current();
  ASSERT_TRUE(current.ok()) << current.status();
  for (const auto& request : Log()) {
    EXPECT_EQ(request["token"], "token-v2") << "the new token is used from the next request, before any 401";
  }

  // Rewritten in place, same length, possibly within one timestamp tick: a 401 re-reads it.
  Hook("POST", "tokens", {{"tokens", {"token-v3"}}});
  WriteFile(sa + "/token", "token-v3\n");
  ASSERT_TRUE(actuator->Apply({3, 3}).ok());
  EXPECT_EQ(Log().back()["token"], "token-v3");
  EXPECT_EQ(Replicas(kPrefill), 3);
}

}  // namespace
}  // namespace tandem::controller
