// HttpClient: blocking HTTP(S) requests through libcurl, for the controller's sources (scrapes,
// the Prometheus HTTP API) and the Kubernetes API. One request per call; thread-safe (each call
// uses its own curl handle).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem {

struct HttpClientRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{5000};
  // TLS: a PEM file of trusted CAs (empty: the system's); `insecure_skip_verify` only for tests
  // and explicit operator flags.
  std::string ca_file;
  bool insecure_skip_verify = false;
};

struct HttpClientResponse {
  int status = 0;
  std::string body;
  // Lower-cased header names.
  std::map<std::string, std::string> headers;
};

// Returns the response for any HTTP status (4xx/5xx included); an error only when no response
// came: UNAVAILABLE (connect, TLS, reset), DEADLINE_EXCEEDED (timeout), INVALID_ARGUMENT (bad URL).
absl::StatusOr<HttpClientResponse> HttpFetch(const HttpClientRequest& request);

// GET `url` and return its body when the status is 2xx; any other status is an error whose
// message has the status and the start of the body.
absl::StatusOr<std::string> HttpGetBody(const std::string& url,
                                        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace tandem
