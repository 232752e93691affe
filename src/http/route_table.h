// Maps (method, path) to a handler: exact paths first, then the longest matching prefix.
// Built before the server starts, read-only afterwards (concurrent Find() calls are safe then;
// Add() is not thread-safe).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "http/http_types.h"

namespace tandem::http {

class RouteTable {
 public:
  struct Match {
    enum class Result { kFound, kNotFound, kMethodNotAllowed };
    Result result = Result::kNotFound;
    const HttpHandler* handler = nullptr;  // kFound: owned by the table
    std::string route;  // kFound/kMethodNotAllowed: the registered path, prefixes end in '*'
    std::string allow;  // kMethodNotAllowed: the path's methods, e.g. "GET, POST"
  };

  // Registering the same (method, path) twice, an empty method, or a path not starting with
  // '/' is a bug and CHECK-fails.
  void Add(std::string method, std::string path, HttpHandler handler);
  void AddPrefix(std::string method, std::string prefix, HttpHandler handler);

  // 404 when no route matches the path; 405 (with Allow) when the path matches but not the
  // method. An exact path shadows any prefix.
  Match Find(std::string_view method, std::string_view path) const;

 private:
  using MethodMap = std::map<std::string, HttpHandler, std::less<>>;
  static Match FindIn(const MethodMap& methods, std::string_view method, std::string route);

  std::map<std::string, MethodMap, std::less<>> exact_;
  // Longest prefix first.
  std::vector<std::pair<std::string, MethodMap>> prefixes_;
};

}  // namespace tandem::http
