#include "rpc/cluster_auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <vector>

#include "common/check.h"
#include "common/logging.h"
#include "common/strings.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_interceptor.h"

namespace tandem::rpc {
namespace {

namespace gx = grpc::experimental;

class TokenInterceptor final : public gx::Interceptor {
 public:
  explicit TokenInterceptor(std::shared_ptr<const std::string> token) : token_(std::move(token)) {}
  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({kClusterTokenMetadata, *token_});
    }
    methods->Proceed();
  }

 private:
  std::shared_ptr<const std::string> token_;
};

class TokenInterceptorFactory final : public gx::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::shared_ptr<const std::string> token) : token_(std::move(token)) {}
  gx::Interceptor* CreateClientInterceptor(gx::ClientRpcInfo*) override { return new TokenInterceptor(token_); }

 private:
  std::shared_ptr<const std::string> token_;
};

}  // namespace

std::string NewClusterToken() {
  unsigned char bytes[32];
  TANDEM_CHECK(RAND_bytes(bytes, sizeof bytes) == 1) << "the system's random source failed";
  std::string hex;
  for (unsigned char b : bytes) hex += fmt::format("{:02x}", b);
  return hex;
}

bool SecretsEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::Status ClusterAuth::Check(const grpc::ServerContextBase& ctx, std::string_view service) const {
  if (token_.empty()) return absl::OkStatus();
  const auto& md = ctx.client_metadata();
  auto it = md.find(kClusterTokenMetadata);
  const bool present = it != md.end();
  if (present && SecretsEqual(std::string_view(it->second.data(), it->second.size()), token_)) {
    return absl::OkStatus();
  }
  if (unauthenticated_ != nullptr) unauthenticated_->With({std::string(service)}).Increment();
  GetLogger("rpc")->warn("refused an unauthenticated {} call from {} ({})", service, ctx.peer(),
                         present ? "wrong cluster token" : "no cluster token");
  return absl::UnauthenticatedError(
      StrCat(service, " is internal: calls need the cluster token (metadata ", kClusterTokenMetadata, ")"));
}

std::shared_ptr<grpc::Channel> ClusterChannel(const std::string& target, const std::string& token,
                                              const grpc::ChannelArguments& args) {
  if (token.empty()) return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  std::vector<std::unique_ptr<gx::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<TokenInterceptorFactory>(std::make_shared<const std::string>(token)));
  return gx::CreateCustomChannelWithInterceptors(target, grpc::InsecureChannelCredentials(), args,
                                                 std::move(factories));
}

}  // namespace tandem::rpc
