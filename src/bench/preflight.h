// Before a run: is there an OpenAI-compatible server at the URL, and which model does it
// serve? GET <base>/v1/models, with an error that says what was wrong (nothing listening, a
// 404 from something that is not an OpenAI API, an API key needed, a body that is not a model
// list).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/http_stream_client.h"

namespace tandem::bench {

struct ServerInfo {
  std::vector<std::string> models;  // ids, as listed
  std::string model;                // the one to use: the one asked for, or the first listed
  int max_model_len = 0;            // of that model, when the server says (vLLM and tandem do); else 0
  std::string note;                 // a warning to show, e.g. a --model the server did not list
};

// Interprets a /v1/models response (status and body). FailedPrecondition with an explanation
// when it is not an OpenAI model list. `wanted`: --model (empty: take the first).
absl::StatusOr<ServerInfo> ParseModelList(const BaseUrl& url, int status, const std::string& body,
                                          const std::string& wanted);

// Runs the GET (10 s timeout). Unavailable when nothing answers at the URL.
absl::StatusOr<ServerInfo> Preflight(const BaseUrl& url,
                                     const std::vector<std::pair<std::string, std::string>>& headers,
                                     const std::string& wanted);

}  // namespace tandem::bench
