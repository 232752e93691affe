// The `tandem` subcommands. Each parses its own flags and returns the process exit code.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tandem::cli {

int GenerateCommand(const std::vector<std::string>& args);
int ModelCommand(const std::vector<std::string>& args);
int WorkerCommand(const std::vector<std::string>& args);
int RouterCommand(const std::vector<std::string>& args);
int UpCommand(const std::vector<std::string>& args);
int ControllerCommand(const std::vector<std::string>& args);
int DrainCommand(const std::vector<std::string>& args);
int BenchCommand(const std::vector<std::string>& args);
int ProfileCommand(const std::vector<std::string>& args);
int PlanCommand(const std::vector<std::string>& args);
int PerplexityCommand(const std::vector<std::string>& args);

// Prints `status` as "tandem <command>: <message>" on stderr and returns 1 (2 for usage errors).
int Fail(const std::string& command, const std::string& message, int code = 1);

// vLLM's --goodput takes several words ("--goodput ttft:500 tpot:50"): joins the KEY:VALUE words
// that follow it into one value (bench serve, plan).
std::vector<std::string> JoinGoodputWords(const std::vector<std::string>& args);

class FlagSet;
// Parses `args` into `flags`. nullopt to go on; else the exit code: 0 after --help, 2 (with the
// message printed) for a usage error.
std::optional<int> ParseArgs(FlagSet& flags, const std::vector<std::string>& args, const std::string& command);

}  // namespace tandem::cli
