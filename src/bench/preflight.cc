#include "bench/preflight.h"

#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {

absl::StatusOr<ServerInfo> ParseModelList(const BaseUrl& url, int status, const std::string& body,
                                          const std::string& wanted) {
  using Json = nlohmann::json;
  const std::string where = StrCat("GET ", url.ToString(), "/v1/models");
  const std::string snippet = body.substr(0, 200);
  if (status == 401 || status == 403) {
    return absl::FailedPreconditionError(
        StrCat(where, " answered HTTP ", status, ": the server wants an API key (--api-key or OPENAI_API_KEY)"));
  }
  if (status == 404) {
    return absl::FailedPreconditionError(StrCat(
        where, " answered HTTP 404: this is not an OpenAI-compatible server, or --base-url is not its root "
        "(give e.g. http://127.0.0.1:8000, without /v1)"));
  }
  if (status != 200) {
    return absl::FailedPreconditionError(StrCat(where, " answered HTTP ", status, ": ", snippet));
  }
  const Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::FailedPreconditionError(
        StrCat(where, " did not answer JSON, so this is not an OpenAI-compatible API: ", snippet));
  }
  auto data = j.is_object() ? j.find("data") : j.end();
  if (!j.is_object() || data == j.end() || !data->is_array()) {
    return absl::FailedPreconditionError(
        StrCat(where, " is not an OpenAI model list ({\"object\": \"list\", \"data\": [...]}): ", snippet));
  }
  ServerInfo info;
  std::vector<int> lengths;
  for (const Json& m : *data) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
    info.models.push_back(m["id"].get<std::string>());
    const auto len = m.find("max_model_len");
    lengths.push_back(len != m.end() && len->is_number_integer() ? len->get<int>() : 0);
  }
  if (info.models.empty()) {
    return absl::FailedPreconditionError(StrCat(where, " lists no models: the server has nothing to serve"));
  }
  size_t pick = 0;
  if (!wanted.empty()) {
    pick = info.models.size();
    for (size_t i = 0; i < info.models.size(); ++i) {
      if (info.models[i] == wanted) pick = i;
    }
    if (pick == info.models.size()) {
      info.note = StrCat("the server does not list model '", wanted, "' (it lists '", info.models.front(),
                         "'); sending it anyway");
    }
  }
  info.model = wanted.empty() ? info.models.front() : wanted;
  info.max_model_len = pick < lengths.size() ? lengths[pick] : 0;
  return info;
}

absl::StatusOr<ServerInfo> Preflight(const BaseUrl& url,
                                     const std::vector<std::pair<std::string, std::string>>& headers,
                                     const std::string& wanted) {
  auto response = HttpGet(url, "/v1/models", headers, std::chrono::seconds(10));
  if (!response.ok()) {
    const std::string what = absl::IsDeadlineExceeded(response.status())
                                 ? StrCat("GET ", url.ToString(), "/v1/models: nothing answered within 10 s")
                                 : std::string(response.status().message());
    return absl::UnavailableError(
        StrCat("no OpenAI-compatible server reachable: ", what, " (is the server running? check --base-url)"));
  }
  return ParseModelList(url, response->status, response->body, wanted);
}

}  // namespace tandem::bench
