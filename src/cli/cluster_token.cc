#include "cli/cluster_token.h"

#include <fstream>
#include <sstream>

#include "cli/environment.h"
#include "common/strings.h"

namespace tandem::cli {
namespace {

constexpr size_t kMinTokenLength = 16;

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(StrCat("cannot read the cluster token file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  return token;
}

}  // namespace

void ClusterTokenFlags::Register(FlagSet& f, bool with_insecure) {
  f.String("cluster-token-file", &file,
           StrCat("file holding the cluster token that internal calls (worker registration, KV reservations, "
                  "admin) must carry (default: $", kClusterTokenFileEnv, ", else the token in $", kClusterTokenEnv,
                  "; tandem up makes one itself)"));
  if (!with_insecure) return;
  f.Bool("insecure-no-cluster-auth", &insecure,
         "run the internal plane without a cluster token: anyone who reaches an internal port can register a "
         "worker or drain one (development only)");
}

bool ClusterTokenFlags::Given() const {
  return !file.empty() || !Env(kClusterTokenFileEnv).empty() || !Env(kClusterTokenEnv).empty();
}

absl::StatusOr<std::string> ClusterTokenFlags::Resolve() const {
  if (insecure) return std::string();
  std::string token;
  if (std::string path = file.empty() ? Env(kClusterTokenFileEnv) : file; !path.empty()) {
    absl::StatusOr<std::string> read = ReadTokenFile(path);
    if (!read.ok()) return read.status();
    token = *std::move(read);
  } else {
    token = Env(kClusterTokenEnv);
  }
  if (token.empty()) {
    return absl::FailedPreconditionError(
        StrCat("no cluster token: give the same secret to the router, workers and controller with "
               "--cluster-token-file or $", kClusterTokenFileEnv, " (a file) or $", kClusterTokenEnv,
               " (e.g. `openssl rand -hex 32`); tandem up makes one itself; --insecure-no-cluster-auth "
               "runs without one"));
  }
  if (token.size() < kMinTokenLength) {
    return absl::FailedPreconditionError(
        StrCat("the cluster token has ", token.size(), " characters; use at least ", kMinTokenLength));
  }
  return token;
}

}  // namespace tandem::cli
