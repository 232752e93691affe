// A test fixture around fake_apiserver.py: a TLS API server with its own CA (made here with the
// openssl CLI), bearer tokens, the scale subresource of two Deployments, Leases, a request log
// and fault injection. Skips without python3 and openssl unless TANDEM_REQUIRE_E2E=1.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/child_process.h"
#include "common/http_client.h"
#include "common/strings.h"
#include "common/subprocess.h"
#include "controller/k8s/kube_client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::controller::k8s_testing {

using json = nlohmann::json;

inline constexpr char kNamespace[] = "team-a";
inline constexpr char kPrefill[] = "llm-prefill";
inline constexpr char kDecode[] = "llm-decode";
inline constexpr char kToken[] = "good-token";
inline constexpr char kReaderToken[] = "reader-token";

inline std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = StrCat(dir.empty() ? "." : dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

inline bool E2eRequired() {
  const char* v = std::getenv("TANDEM_REQUIRE_E2E");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

inline void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Replaces `path` atomically, as the kubelet does when it rotates a projected token.
inline void ReplaceFile(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".new";
  WriteFile(tmp, contents);
  ASSERT_EQ(::rename(tmp.c_str(), path.c_str()), 0);
}

class FakeApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = FindInPath("python3");
    openssl_ = FindInPath("openssl");
    if (python_.empty() || openssl_.empty()) {
      const std::string missing = python_.empty() ? "python3" : "openssl";
      if (E2eRequired()) FAIL() << missing << " is not on PATH but TANDEM_REQUIRE_E2E=1";
      GTEST_SKIP() << missing << " is not on PATH (scripts/setup.sh installs it)";
    }
    char tmpl[] = "/tmp/tandem-k8s-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* ca : {"ca", "other-ca"}) {
      ASSERT_NO_FATAL_FAILURE(MakeCa(ca));
    }
    ASSERT_NO_FATAL_FAILURE(MakeServerCert("ca"));
    ASSERT_NO_FATAL_FAILURE(StartFake());
  }

  void TearDown() override {
    if (fake_ != nullptr) fake_->Stop(absl::Seconds(2));
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void OpenSsl(std::vector<std::string> args) {
    args.insert(args.begin(), openssl_);
    SubprocessOptions options;
    options.stdout_to_stderr = true;
    auto rc = RunSubprocess(args, options);
    ASSERT_TRUE(rc.ok()) << rc.status();
    ASSERT_EQ(*rc, 0) << "openssl " << args[1] << " failed";
  }

  void MakeCa(const std::string& name) {
    OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             Path(name + ".key"), "-out", Path(name + ".crt"), "-days", "2", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  }

  void MakeServerCert(const std::string& ca) {
    OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             Path("server.key"), "-out", Path("server.csr"), "-subj", "/CN=127.0.0.1"});
    WriteFile(Path("server.ext"),
              "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
    OpenSsl({"x509", "-req", "-in", Path("server.csr"), "-CA", Path(ca + ".crt"), "-CAkey", Path(ca + ".key"),
             "-CAcreateserial", "-out", Path("server.crt"), "-days", "2", "-extfile", Path("server.ext")});
  }

  void StartFake() {
    auto child = ChildProcess::Spawn(
        {python_, StrCat(TANDEM_SOURCE_DIR, "/tests/unit/controller/k8s/fake_apiserver.py"), "--cert", Path("server.crt"),
         "--key", Path("server.key"), "--token", kToken, "--reader-token", kReaderToken, "--deployment",
         StrCat(kNamespace, "/", kPrefill, "=2"), "--deployment", StrCat(kNamespace, "/", kDecode, "=3")});
    ASSERT_TRUE(child.ok()) << child.status();
    fake_ = std::move(*child);
    auto line = fake_->ReadLine(absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << "fake_apiserver.py did not start: " << line.status();
    port_ = std::stoi(*line);
  }

  std::string Path(const std::string& name) const { return StrCat(dir_, "/", name); }
  std::string Server() const { return StrCat("https://127.0.0.1:", port_); }

  // A test hook of the fake (under /__fake/), trusted through the right CA.
  json Hook(const std::string& method, const std::string& path, const json& body = json()) {
    HttpClientRequest request;
    request.method = method;
    request.url = StrCat(Server(), "/__fake/", path);
    request.ca_file = Path("ca.crt");
    if (!body.is_null()) request.body = body.dump();
    auto response = HttpFetch(request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return json();
    EXPECT_EQ(response->status, 200) << response->body;
    return json::parse(response->body);
  }
  json Log() { return Hook("GET", "log"); }
  void ClearLog() { Hook("POST", "log/clear"); }
  json WritesIn(const json& log) {
    json writes = json::array();
    for (const auto& e : log) {
      if (e["method"] != "GET") writes.push_back(e);
    }
    return writes;
  }
  int Replicas(const std::string& deployment) {
    return Hook("GET", "state")[StrCat(kNamespace, "/", deployment)]["replicas"].get<int>();
  }

  KubeConfig Config(const std::string& token = kToken) const {
    KubeConfig config;
    config.server = Server();
    config.ca_file = Path("ca.crt");
    config.token = token;
    config.source = "test";
    return config;
  }

  std::string python_, openssl_, dir_;
  std::unique_ptr<ChildProcess> fake_;
  int port_ = 0;
};

}  // namespace tandem::controller::k8s_testing
