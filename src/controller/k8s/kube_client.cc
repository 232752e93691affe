#include "controller/k8s/kube_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace tandem::controller {
namespace {

std::string Trim(std::string s) {
  const char* space = " \t\r\n";
  s.erase(s.find_last_not_of(space) + 1);
  s.erase(0, s.find_first_not_of(space));
  return s;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat("cannot read ", what, " ", path, ": ", std::strerror(errno)));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string token, ReadFile(path, "token file"));
  token = Trim(std::move(token));
  if (token.empty()) return absl::FailedPreconditionError(StrCat("token file ", path, " is empty"));
  return token;
}

// A file deleted when the last KubeConfig copy that refers to it goes.
struct TempFile {
  explicit TempFile(std::string p) : path(std::move(p)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { ::unlink(path.c_str()); }
  const std::string path;
};

// Writes inline certificate-authority-data to a private (0600) temporary file, since curl takes
// CAs by path.
absl::StatusOr<std::shared_ptr<TempFile>> WritePrivateTempFile(const std::string& contents,
                                                               const std::string& temp_dir) {
  std::string path = StrCat(temp_dir.empty() ? "/tmp" : temp_dir, "/tandem-kube-ca-XXXXXX");
  const int fd = ::mkstemp(path.data());
  if (fd < 0) return absl::InternalError(StrCat("cannot create a temporary CA file: ", std::strerror(errno)));
  auto file = std::make_shared<TempFile>(path);
  ::fchmod(fd, 0600);
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return absl::InternalError(StrCat("cannot write ", path, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return file;
}

std::string DirName(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string Resolve(const std::string& base_dir, const std::string& path) {
  return path.empty() || path.front() == '/' ? path : StrCat(base_dir, "/", path);
}

// The entry `name` of a kubeconfig list (clusters, users, contexts): its inner map.
absl::StatusOr<YAML::Node> FindNamed(const YAML::Node& root, const char* list, const char* inner,
                                     const std::string& name, const std::string& where) {
  const YAML::Node entries = root[list];
  if (entries && entries.IsSequence()) {
    for (const YAML::Node& entry : entries) {
      if (entry["name"] && entry["name"].as<std::string>() == name) {
        const YAML::Node value = entry[inner];
        return value && value.IsMap() ? value : YAML::Node(YAML::NodeType::Map);
      }
    }
  }
  return absl::NotFoundError(StrCat(where, ": no ", inner, " named \"", name, "\" in `", list, "`"));
}

std::string GetString(const YAML::Node& map, const char* key) {
  const YAML::Node value = map[key];
  return value && value.IsScalar() ? value.as<std::string>() : std::string();
}

absl::Status ReadCluster(const YAML::Node& cluster, const std::string& base_dir, const std::string& where,
                         const std::string& temp_dir, KubeConfig& config) {
  config.server = GetString(cluster, "server");
  if (config.server.empty()) return absl::InvalidArgumentError(StrCat(where, ": the cluster has no `server`"));
  if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
    return absl::InvalidArgumentError(StrCat(where, ": server \"", config.server, "\" is not an http(s) URL"));
  }
  if (const YAML::Node insecure = cluster["insecure-skip-tls-verify"]; insecure && insecure.IsScalar()) {
    config.insecure_skip_tls_verify = insecure.as<bool>();
  }
  const std::string ca_data = GetString(cluster, "certificate-authority-data");
  const std::string ca_path = GetString(cluster, "certificate-authority");
  if (config.insecure_skip_tls_verify && (!ca_data.empty() || !ca_path.empty())) {
    return absl::InvalidArgumentError(
        StrCat(where, ": insecure-skip-tls-verify together with a certificate authority (pick one)"));
  }
  if (!ca_data.empty()) {  // takes precedence over the path, as in kubectl
    std::string pem;
    if (!absl::Base64Unescape(ca_data, &pem) || pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(
          StrCat(where, ": certificate-authority-data is not a base64-encoded PEM certificate"));
    }
    TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<TempFile> file, WritePrivateTempFile(pem, temp_dir));
    config.ca_file = file->path;
    config.owned_files = std::move(file);
  } else if (!ca_path.empty()) {
    config.ca_file = Resolve(base_dir, ca_path);
    if (::access(config.ca_file.c_str(), R_OK) != 0) {
      return absl::NotFoundError(StrCat(where, ": cannot read certificate-authority ", config.ca_file, ": ",
                                        std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadUser(const YAML::Node& user, const std::string& user_name, const std::string& base_dir,
                      const std::string& where, KubeConfig& config) {
  for (const char* key : {"client-certificate", "client-certificate-data", "client-key", "client-key-data"}) {
    if (user[key]) {
      return absl::UnimplementedError(
          StrCat(where, ": user \"", user_name, "\" authenticates with a client certificate, which tandem does "
                 "not support; give it a bearer token (token or tokenFile, e.g. from `kubectl create token`)"));
    }
  }
  for (const char* key : {"exec", "auth-provider", "username", "password"}) {
    if (user[key]) {
      return absl::UnimplementedError(
          StrCat(where, ": user \"", user_name, "\" uses `", key, "`, which tandem does not support; give it a "
                 "bearer token (token or tokenFile, e.g. from `kubectl create token`)"));
    }
  }
  config.token = GetString(user, "token");
  // A tokenFile wins over an inline token (client-go reads the file and prefers it).
  config.token_file = Resolve(base_dir, GetString(user, "tokenFile"));
  if (!config.token_file.empty()) config.token.clear();
  if (config.token.empty() && config.token_file.empty()) {
    GetLogger("controller")->warn("{} user={} has no token; requests will be anonymous", where,
                                  user_name);
  }
  return absl::OkStatus();
}

absl::StatusOr<KubeConfig> ParseKubeconfig(const YAML::Node& root, const std::string& path,
                                           const std::string& wanted_context,
                                           const std::string& temp_dir) {
  const std::string context_name = wanted_context.empty() ? GetString(root, "current-context") : wanted_context;
  if (context_name.empty()) {
    return absl::InvalidArgumentError(
        StrCat("kubeconfig ", path, " has no current-context; name one (--kube-context)"));
  }
  const std::string where = StrCat("kubeconfig ", path, " context \"", context_name, "\"");
  TANDEM_ASSIGN_OR_RETURN(YAML::Node context, FindNamed(root, "contexts", "context", context_name,
                                                        StrCat("kubeconfig ", path)));
  const std::string cluster_name = GetString(context, "cluster");
  const std::string user_name = GetString(context, "user");
  if (cluster_name.empty()) return absl::InvalidArgumentError(StrCat(where, " names no cluster"));

  KubeConfig config;
  config.source = where;
  config.default_namespace = GetString(context, "namespace");
  const std::string base_dir = DirName(path);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node cluster, FindNamed(root, "clusters", "cluster", cluster_name, where));
  TANDEM_RETURN_IF_ERROR(ReadCluster(cluster, base_dir, where, temp_dir, config));
  if (!user_name.empty()) {
    TANDEM_ASSIGN_OR_RETURN(YAML::Node user, FindNamed(root, "users", "user", user_name, where));
    TANDEM_RETURN_IF_ERROR(ReadUser(user, user_name, base_dir, where, config));
  }
  return config;
}

}  // namespace

absl::StatusOr<KubeConfig> LoadKubeConfig(const KubeConfigOptions& options) {
  if (options.kubeconfig_path.empty()) {
    if (!options.context.empty()) {
      return absl::InvalidArgumentError("a kube context was given without a kubeconfig file");
    }
    return LoadInClusterConfig(options);
  }
  return LoadKubeconfigFile(options.kubeconfig_path, options.context, options.temp_dir);
}

absl::StatusOr<KubeConfig> LoadInClusterConfig(const KubeConfigOptions& options) {
  const std::string& service_account_dir = options.service_account_dir;
  const std::string& host = options.service_host;
  const std::string& port = options.service_port;
  if (host.empty() || port.empty()) {
    return absl::FailedPreconditionError(
        "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are unset); "
        "pass --kubeconfig to reach a cluster from outside");
  }
  KubeConfig config;
  config.server = host.find(':') != std::string::npos ? StrCat("https://[", host, "]:", port)
                                                     : StrCat("https://", host, ":", port);
  config.source = StrCat("in-cluster service account ", service_account_dir);
  config.token_file = StrCat(service_account_dir, "/token");
  if (::access(config.token_file.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(
        StrCat("in-cluster: cannot read the service-account token ", config.token_file, " (",
               std::strerror(errno), "); is automountServiceAccountToken disabled for this pod?"));
  }
  config.ca_file = StrCat(service_account_dir, "/ca.crt");
  if (::access(config.ca_file.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(
        StrCat("in-cluster: cannot read the cluster CA ", config.ca_file, ": ", std::strerror(errno)));
  }
  if (auto ns = ReadFile(StrCat(service_account_dir, "/namespace"), "namespace file"); ns.ok()) {
    config.default_namespace = Trim(*ns);
  }
  return config;
}

absl::StatusOr<KubeConfig> LoadKubeconfigFile(const std::string& path, const std::string& context,
                                              const std::string& temp_dir) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFile(path, "kubeconfig"));
  try {
    const YAML::Node root = YAML::Load(text);
    if (!root.IsMap()) return absl::InvalidArgumentError(StrCat("kubeconfig ", path, " is not a YAML mapping"));
    return ParseKubeconfig(root, path, context, temp_dir);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("kubeconfig ", path, " is not valid: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<KubeClient>> KubeClient::Create(KubeConfig config) {
  if (config.server.empty()) return absl::InvalidArgumentError("the Kubernetes config has no server");
  while (!config.server.empty() && config.server.back() == '/') config.server.pop_back();
  std::unique_ptr<KubeClient> client(new KubeClient(std::move(config)));
  TANDEM_RETURN_IF_ERROR(client->Token().status());  // a missing token file fails now, not at the first tick
  return client;
}

std::string KubeClient::CredentialDescription() const {
  if (!config_.token_file.empty()) return StrCat("the token in ", config_.token_file);
  if (!config_.token.empty()) return StrCat("the token of ", config_.source);
  return StrCat("no token (", config_.source, " has none)");
}

absl::StatusOr<std::string> KubeClient::Token(bool force) {
  if (config_.token_file.empty()) return config_.token;
  struct stat st;
  if (::stat(config_.token_file.c_str(), &st) != 0) {
    return absl::UnavailableError(StrCat("cannot stat token file ", config_.token_file, ": ", std::strerror(errno)));
  }
  const FileStamp stamp{static_cast<unsigned long>(st.st_dev), static_cast<unsigned long>(st.st_ino),
                        static_cast<long long>(st.st_size),
                        static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec};
  absl::MutexLock lock(&mu_);
  if (!force && stamp == token_stamp_ && !file_token_.empty()) return file_token_;
  TANDEM_ASSIGN_OR_RETURN(std::string token, ReadToken(config_.token_file));
  if (!file_token_.empty() && token != file_token_) {
    GetLogger("controller")->info("kubernetes token_file={} changed; using the new token", config_.token_file);
  }
  file_token_ = std::move(token);
  token_stamp_ = stamp;
  return file_token_;
}

absl::StatusOr<HttpClientResponse> KubeClient::Send(const KubeRequest& request) {
  TANDEM_ASSIGN_OR_RETURN(const std::string token, Token());
  HttpClientRequest http;
  http.method = request.method;
  http.url = StrCat(config_.server, request.path);
  http.body = request.body;
  http.timeout = request.timeout;
  http.ca_file = config_.ca_file;
  http.insecure_skip_verify = config_.insecure_skip_tls_verify;
  http.headers.emplace_back("Accept", "application/json");
  http.headers.emplace_back("User-Agent", "tandem-controller");
  if (!request.content_type.empty()) http.headers.emplace_back("Content-Type", request.content_type);
  const auto with_token = [&http](const std::string& t) {
    HttpClientRequest r = http;
    if (!t.empty()) r.headers.emplace_back("Authorization", StrCat("Bearer ", t));
    return r;
  };
  absl::StatusOr<HttpClientResponse> response = HttpFetch(with_token(token));
  if (response.ok() && response->status == 401 && !config_.token_file.empty()) {
    TANDEM_ASSIGN_OR_RETURN(const std::string fresh, Token(/*force=*/true));
    if (fresh != token) response = HttpFetch(with_token(fresh));
  }
  return response;
}

namespace {

// object[key] when `object` is an object that has it, else null. (nlohmann's value() and get()
// throw on a member of another type than asked, and an API server's answer is the network's.)
const nlohmann::json* Member(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// An int32 >= 0, as the API types spec.replicas (a larger number would wrap when narrowed).
bool IsReplicaCount(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= INT32_MAX;
  return v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX;
}

// object[key] when it is a string, else "".
std::string StringMember(const nlohmann::json& object, const char* key) {
  const nlohmann::json* m = Member(object, key);
  return m != nullptr && m->is_string() ? m->get<std::string>() : std::string();
}

}  // namespace

absl::StatusOr<KubeScale> ParseKubeScale(std::string_view body) {
  const auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json* metadata = Member(json, "metadata");
  if (StringMember(json, "kind") != "Scale" || metadata == nullptr || !metadata->is_object()) {
    return absl::InvalidArgumentError("not a Scale object");
  }
  KubeScale scale;
  scale.resource_version = StringMember(*metadata, "resourceVersion");
  if (scale.resource_version.empty()) {
    return absl::InvalidArgumentError("a Scale object without metadata.resourceVersion");
  }
  // spec.replicas is omitted when 0 (omitempty in the API's Go types).
  const nlohmann::json* spec = Member(json, "spec");
  const nlohmann::json* replicas = spec != nullptr ? Member(*spec, "replicas") : nullptr;
  if (replicas != nullptr) {
    if (!IsReplicaCount(*replicas)) {
      return absl::InvalidArgumentError("a Scale object whose spec.replicas is not a count");
    }
    scale.replicas = static_cast<int>(replicas->get<int64_t>());
  }
  return scale;
}

std::string KubeStatusMessage(const HttpClientResponse& response) {
  const auto json = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (StringMember(json, "kind") == "Status") {
    // A Status without a message (some proxies and webhooks send one) shows its body instead.
    if (std::string message = StringMember(json, "message"); !message.empty()) return message;
  }
  if (response.body.empty()) return "(empty body)";
  return response.body.substr(0, 200);
}

}  // namespace tandem::controller
