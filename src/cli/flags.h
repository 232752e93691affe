// A small command-line flag parser for the `tandem` subcommands: --name=value, --name value,
// --flag / --no-flag for booleans, positional arguments, and generated --help text. Flags are
// parsed in main and turned into each component's Options struct.
//
// Settings travel once: a flags struct (EngineFlags, RouterFlags, WorkerFlags, ...) registers its
// fields in one Register(FlagSet&) method; the same registration parses a command line, prints
// --help, and (ToArgv) renders the struct back into the command line of a child process, so a
// launcher such as `tandem up` never spells a child's flags by hand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tandem::cli {

class FlagSet {
 public:
  FlagSet(std::string usage, std::string description)
      : usage_(std::move(usage)), description_(std::move(description)) {}

  // Registers a flag bound to `target`, whose current value is the default shown in --help.
  void String(const std::string& name, std::string* target, const std::string& help);
  void Int(const std::string& name, int64_t* target, const std::string& help);
  void Int(const std::string& name, int* target, const std::string& help);
  void Float(const std::string& name, double* target, const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);
  // An optional value: unset unless given.
  void OptionalInt(const std::string& name, std::optional<int64_t>* target, const std::string& help);

  // From now on only flags named in `names` are registered (the others' Register calls are
  // ignored): how a command offers a chosen part of another component's settings, with that
  // component's own names, defaults and help. nullopt: every flag again.
  void RegisterOnly(std::optional<std::vector<std::string>> names) { only_ = std::move(names); }

  // Parses argv (without the program and subcommand names). InvalidArgument for unknown flags,
  // missing or malformed values. Returns Cancelled when --help was given (help already printed).
  absl::Status Parse(const std::vector<std::string>& args);
  const std::vector<std::string>& positional() const { return positional_; }
  bool was_set(const std::string& name) const;

  std::string Help() const;

  // `--name=value` for every flag whose current value differs from the same flag in
  // `defaults` (a FlagSet over a default-constructed copy of the same struct), in registration
  // order. Booleans render as --name / --no-name.
  std::vector<std::string> ArgsDifferingFrom(const FlagSet& defaults) const;

 private:
  enum class Kind { kString, kInt64, kInt, kFloat, kBool, kOptionalInt };
  struct Flag {
    std::string name;
    Kind kind;
    void* target;
    std::string help;
    std::string default_text;
    bool set = false;
  };
  void Add(Flag flag);
  Flag* Find(const std::string& name);
  const Flag* Find(const std::string& name) const;
  absl::Status Assign(Flag& flag, const std::string& value);
  static std::optional<std::string> ValueText(const Flag& flag);  // nullopt: an unset optional

  std::string usage_, description_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  std::optional<std::vector<std::string>> only_;
};

// InvalidArgument unless 0 <= port <= 65535 (0: any free port), naming the flag.
absl::Status CheckPort(const std::string& flag, int port);

// The command line that gives a child process the settings in `flags` (only those that differ
// from T's defaults). T has `void Register(FlagSet&)`.
template <typename T>
std::vector<std::string> ToArgv(const T& flags) {
  T defaults{};
  FlagSet default_set("", "");
  defaults.Register(default_set);
  T copy = flags;
  FlagSet set("", "");
  copy.Register(set);
  return set.ArgsDifferingFrom(default_set);
}

}  // namespace tandem::cli
