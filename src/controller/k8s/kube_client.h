// Kubernetes API access for the controller: where the API server is, which CA to trust, which
// bearer token to send, and a client that sends authenticated requests.
//
// Two ways to get the access config:
//   * in-cluster: the pod's service account (the API server's host and port, which `tandem
//     controller` takes from KUBERNETES_SERVICE_HOST/PORT; token, ca.crt and namespace from
//     /var/run/secrets/kubernetes.io/serviceaccount);
//   * a kubeconfig file (current-context or a named context): cluster server,
//     certificate-authority / certificate-authority-data, insecure-skip-tls-verify; user token or
//     tokenFile. Client certificates, exec plugins and auth providers are refused with an error
//     saying so (use a service-account token: `kubectl create token <sa>`).
//
// Token files are read again whenever they change on disk (checked with stat() before each
// request), so projected service-account tokens, which the kubelet rotates, keep working without
// a restart. A 401 also re-reads the file once, in case it was rewritten in place within the
// file system's timestamp granularity.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/http_client.h"

namespace tandem::controller {

inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

// How to reach and authenticate to one API server. Copyable; copies share the temporary CA file
// written for inline certificate-authority-data, which is deleted when the last copy goes.
struct KubeConfig {
  std::string server;           // "https://host:port", maybe with a path prefix
  std::string ca_file;          // PEM of trusted CAs; "" → the system's
  bool insecure_skip_tls_verify = false;
  std::string token;            // a static bearer token, or
  std::string token_file;       // a file holding it, re-read when it changes
  std::string default_namespace;  // the pod's namespace or the context's; "" when not given
  std::string source;           // where this came from, for error messages
  std::shared_ptr<const void> owned_files;  // keeps a temporary CA file alive
};

// Where to look for the config; the controller's flags map onto it.
struct KubeConfigOptions {
  std::string kubeconfig_path;  // --kubeconfig; "" → in-cluster
  std::string context;          // --kube-context; "" → the file's current-context
  std::string service_account_dir = kServiceAccountDir;  // in-cluster only; tests point it elsewhere
  // In-cluster: the API server's service address (the pod's KUBERNETES_SERVICE_HOST/PORT, read by
  // the command line). Empty: not in a pod.
  std::string service_host, service_port;
  // Where inline certificate-authority-data is written for curl (the command line uses $TMPDIR).
  std::string temp_dir = "/tmp";
};

// The kubeconfig file when one is given, else the in-cluster service account.
absl::StatusOr<KubeConfig> LoadKubeConfig(const KubeConfigOptions& options);

// In-cluster (options.service_account_dir, service_host, service_port): FailedPrecondition outside a
// pod (no service host/port) or when the token is missing (automountServiceAccountToken: false).
absl::StatusOr<KubeConfig> LoadInClusterConfig(const KubeConfigOptions& options);

// A kubeconfig file. Relative certificate-authority and tokenFile paths are relative to the
// file's directory (as kubectl reads them). `context` "" → current-context.
// Inline certificate-authority-data is written to a private file under `temp_dir`.
absl::StatusOr<KubeConfig> LoadKubeconfigFile(const std::string& path, const std::string& context = "",
                                              const std::string& temp_dir = "/tmp");

struct KubeRequest {
  std::string method = "GET";
  std::string path;           // "/apis/apps/v1/...", appended to the server URL
  std::string body;
  std::string content_type;   // "" → none sent
  std::chrono::milliseconds timeout{10000};
};

// Sends requests to one API server with the config's CA and bearer token. One attempt per call:
// retry policy belongs to the caller, which knows what is safe to repeat.
// Thread-safe.
class KubeClient {
 public:
  // Fails when the token file cannot be read.
  static absl::StatusOr<std::unique_ptr<KubeClient>> Create(KubeConfig config);

  // The response for any HTTP status; an error only when no response came (connect, TLS,
  // timeout) or the token file became unreadable.
  absl::StatusOr<HttpClientResponse> Send(const KubeRequest& request);

  const KubeConfig& config() const { return config_; }
  // "token file /path", "the token of kubeconfig /path", "no token": says which credential a
  // 401 refused.
  std::string CredentialDescription() const;

 private:
  explicit KubeClient(KubeConfig config) : config_(std::move(config)) {}
  // The bearer token; a token file is read again when its stat() identity changed, or always
  // with `force`.
  absl::StatusOr<std::string> Token(bool force = false);

  const KubeConfig config_;
  absl::Mutex mu_;
  // The token file's identity when last read: a change of any of these means a new token.
  struct FileStamp {
    unsigned long dev = 0, ino = 0;
    long long size = -1, mtime_ns = -1;
    bool operator==(const FileStamp&) const = default;
  };
  FileStamp token_stamp_ ABSL_GUARDED_BY(mu_);
  std::string file_token_ ABSL_GUARDED_BY(mu_);
};

// The scale subresource of a Deployment (autoscaling/v1 Scale) as GET .../scale answers it.
struct KubeScale {
  int replicas = 0;              // spec.replicas (omitted by the API server when 0)
  std::string resource_version;  // metadata.resourceVersion, never empty
};
// Reads a Scale object from an API server's answer (the network's bytes: any JSON, or none).
// InvalidArgument when it is not one: not JSON, kind not "Scale", no resourceVersion, or
// replicas not an integer in [0, 2^31).
absl::StatusOr<KubeScale> ParseKubeScale(std::string_view body);

// The message of a metav1 Status body ("deployments.apps \"x\" not found"), or the start of
// the body when it is not one.
std::string KubeStatusMessage(const HttpClientResponse& response);

}  // namespace tandem::controller
