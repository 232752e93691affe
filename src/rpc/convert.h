// Conversions between wire messages (proto/tandem/v1) and the engine's and transport's types,
// and between absl::Status and grpc::Status. Pure functions.
#pragma once

#include "absl/status/status.h"
#include "types/finish_reason.h"
#include "types/sampling_params.h"
#include "grpcpp/support/status.h"
#include "tandem/kv_transport.h"
#include "tandem/v1/common.pb.h"
#include "tandem/v1/worker.pb.h"

namespace tandem::rpc {

// Proto sampling parameters onto engine ones; absent optional fields keep `defaults`.
SamplingParams FromProto(const v1::SamplingParams& p, const SamplingParams& defaults = {});
v1::SamplingParams ToProto(const SamplingParams& p);

v1::TokenLogprob ToProto(const TokenLogprob& l);
// Pairs top_ids with top_logprobs (the shorter list's length).
TokenLogprob FromProto(const v1::TokenLogprob& p);

v1::FinishReason ToProto(FinishReason r);
FinishReason FromProto(v1::FinishReason r);

KvLayoutInfo FromProto(const v1::KvLayout& p);
v1::KvLayout ToProto(const KvLayoutInfo& l);
KvEndpoint FromProto(const v1::KvEndpoint& p);
v1::KvEndpoint ToProto(const KvEndpoint& e, std::string_view transport);
KvDestination FromProto(const v1::KvDestination& p);

grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

}  // namespace tandem::rpc
