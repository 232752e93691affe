// Why a request stopped generating. The engine sets it, the workers send it (v1::FinishReason)
// and the router turns it into the API's finish_reason.
#pragma once

namespace tandem {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* FinishReasonName(FinishReason r);

}  // namespace tandem
