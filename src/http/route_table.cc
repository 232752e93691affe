#include "http/route_table.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace tandem::http {

void RouteTable::Add(std::string method, std::string path, HttpHandler handler) {
  TANDEM_CHECK(!method.empty() && path.starts_with('/')) << method << " " << path;
  TANDEM_CHECK(handler != nullptr) << method << " " << path;
  const bool inserted = exact_[path].emplace(std::move(method), std::move(handler)).second;
  TANDEM_CHECK(inserted) << "route registered twice: " << path;
}

void RouteTable::AddPrefix(std::string method, std::string prefix, HttpHandler handler) {
  TANDEM_CHECK(!method.empty() && prefix.starts_with('/')) << method << " " << prefix;
  TANDEM_CHECK(handler != nullptr) << method << " " << prefix;
  auto it = std::find_if(prefixes_.begin(), prefixes_.end(),
                         [&](const auto& entry) { return entry.first == prefix; });
  if (it == prefixes_.end()) {
    prefixes_.emplace_back(prefix, MethodMap());
    std::stable_sort(prefixes_.begin(), prefixes_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    it = std::find_if(prefixes_.begin(), prefixes_.end(),
                      [&](const auto& entry) { return entry.first == prefix; });
  }
  const bool inserted = it->second.emplace(std::move(method), std::move(handler)).second;
  TANDEM_CHECK(inserted) << "prefix route registered twice: " << prefix;
}

RouteTable::Match RouteTable::FindIn(const MethodMap& methods, std::string_view method, std::string route) {
  Match match;
  match.route = std::move(route);
  if (auto it = methods.find(method); it != methods.end()) {
    match.result = Match::Result::kFound;
    match.handler = &it->second;
    return match;
  }
  match.result = Match::Result::kMethodNotAllowed;
  for (const auto& [name, handler] : methods) {
    if (!match.allow.empty()) match.allow.append(", ");
    match.allow.append(name);
  }
  return match;
}

RouteTable::Match RouteTable::Find(std::string_view method, std::string_view path) const {
  if (auto it = exact_.find(path); it != exact_.end()) return FindIn(it->second, method, it->first);
  for (const auto& [prefix, methods] : prefixes_) {
    if (path.starts_with(prefix)) return FindIn(methods, method, prefix + "*");
  }
  return Match();
}

}  // namespace tandem::http
