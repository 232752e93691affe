#include "cli/flags.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "common/strings.h"

namespace tandem::cli {

void FlagSet::String(const std::string& name, std::string* target, const std::string& help) {
  Add({name, Kind::kString, target, help, target->empty() ? "" : "\"" + *target + "\""});
}
void FlagSet::Int(const std::string& name, int64_t* target, const std::string& help) {
  Add({name, Kind::kInt64, target, help, std::to_string(*target)});
}
void FlagSet::Int(const std::string& name, int* target, const std::string& help) {
  Add({name, Kind::kInt, target, help, std::to_string(*target)});
}
void FlagSet::Float(const std::string& name, double* target, const std::string& help) {
  Add({name, Kind::kFloat, target, help, fmt::format("{:g}", *target)});
}
void FlagSet::Bool(const std::string& name, bool* target, const std::string& help) {
  Add({name, Kind::kBool, target, help, *target ? "true" : "false"});
}
void FlagSet::OptionalInt(const std::string& name, std::optional<int64_t>* target,
                          const std::string& help) {
  Add({name, Kind::kOptionalInt, target, help, ""});
}

void FlagSet::Add(Flag flag) {
  if (only_.has_value() && std::find(only_->begin(), only_->end(), flag.name) == only_->end()) return;
  flags_.push_back(std::move(flag));
}

FlagSet::Flag* FlagSet::Find(const std::string& name) {
  for (auto& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const FlagSet::Flag* FlagSet::Find(const std::string& name) const {
  for (const auto& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool FlagSet::was_set(const std::string& name) const {
  for (const auto& f : flags_) {
    if (f.name == name) return f.set;
  }
  return false;
}

absl::Status FlagSet::Assign(Flag& flag, const std::string& value) {
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(StrCat("--", flag.name, ": '", value, "' is not ", what));
  };
  const char* begin = value.c_str();
  char* end = nullptr;
  errno = 0;
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.target) = value;
      break;
    case Kind::kInt64:
    case Kind::kInt:
    case Kind::kOptionalInt: {
      const long long v = std::strtoll(begin, &end, 10);
      if (value.empty() || *end != '\0' || errno == ERANGE) return bad("an integer");
      if (flag.kind == Kind::kInt) {
        if (v < INT32_MIN || v > INT32_MAX) return bad("a 32-bit integer");
        *static_cast<int*>(flag.target) = static_cast<int>(v);
      } else if (flag.kind == Kind::kInt64) {
        *static_cast<int64_t*>(flag.target) = v;
      } else {
        *static_cast<std::optional<int64_t>*>(flag.target) = v;
      }
      break;
    }
    case Kind::kFloat: {
      const double v = std::strtod(begin, &end);
      if (value.empty() || *end != '\0' || errno == ERANGE) return bad("a number");
      *static_cast<double*>(flag.target) = v;
      break;
    }
    case Kind::kBool:
      if (value == "true" || value == "1" || value == "yes") {
        *static_cast<bool*>(flag.target) = true;
      } else if (value == "false" || value == "0" || value == "no") {
        *static_cast<bool*>(flag.target) = false;
      } else {
        return bad("true or false");
      }
      break;
  }
  flag.set = true;
  return absl::OkStatus();
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      positional_.insert(positional_.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      positional_.push_back(a);
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::fputs(Help().c_str(), stdout);
      return absl::CancelledError("help");
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* flag = Find(name);
    if (flag == nullptr && name.rfind("no-", 0) == 0) {
      Flag* negated = Find(name.substr(3));
      if (negated != nullptr && negated->kind == Kind::kBool && !has_value) {
        *static_cast<bool*>(negated->target) = false;
        negated->set = true;
        continue;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!has_value) {
      if (flag->kind == Kind::kBool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(StrCat("--", name, " needs a value"));
      }
    }
    if (auto s = Assign(*flag, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string FlagSet::Help() const {
  std::string out = StrCat("usage: ", usage_, "\n\n", description_, "\n\nflags:\n");
  for (const auto& f : flags_) {
    std::string lhs = "  --" + f.name;
    if (f.kind != Kind::kBool) lhs += f.kind == Kind::kString ? " TEXT" : f.kind == Kind::kFloat ? " X" : " N";
    out += fmt::format("{:<26} {}", lhs, f.help);
    if (!f.default_text.empty()) out += StrCat(" (default ", f.default_text, ")");
    out += "\n";
  }
  out += fmt::format("{:<26} {}\n", "  --help", "show this help");
  return out;
}

absl::Status CheckPort(const std::string& flag, int port) {
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(StrCat(flag, " must be in [0, 65535], not ", port));
  return absl::OkStatus();
}

std::optional<std::string> FlagSet::ValueText(const Flag& flag) {
  switch (flag.kind) {
    case Kind::kString:
      return *static_cast<const std::string*>(flag.target);
    case Kind::kInt64:
      return std::to_string(*static_cast<const int64_t*>(flag.target));
    case Kind::kInt:
      return std::to_string(*static_cast<const int*>(flag.target));
    case Kind::kFloat:
      // Round-trips through strtod exactly.
      return fmt::format("{}", *static_cast<const double*>(flag.target));
    case Kind::kBool:
      return *static_cast<const bool*>(flag.target) ? "true" : "false";
    case Kind::kOptionalInt: {
      const auto& v = *static_cast<const std::optional<int64_t>*>(flag.target);
      if (!v.has_value()) return std::nullopt;
      return std::to_string(*v);
    }
  }
  return std::nullopt;
}

std::vector<std::string> FlagSet::ArgsDifferingFrom(const FlagSet& defaults) const {
  std::vector<std::string> args;
  for (const Flag& f : flags_) {
    const std::optional<std::string> value = ValueText(f);
    const Flag* d = defaults.Find(f.name);
    if (d != nullptr && ValueText(*d) == value) continue;
    if (!value.has_value()) continue;  // an optional back to unset cannot be said on a command line
    if (f.kind == Kind::kBool) {
      args.push_back(StrCat(*value == "true" ? "--" : "--no-", f.name));
    } else {
      args.push_back(StrCat("--", f.name, "=", *value));
    }
  }
  return args;
}

}  // namespace tandem::cli
