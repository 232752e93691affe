// Where a process finds the internal plane's cluster token (rpc/cluster_auth.h), in order:
//   --cluster-token-file PATH, $TANDEM_CLUSTER_TOKEN_FILE, $TANDEM_CLUSTER_TOKEN.
// Never a flag with the token itself: a command line is visible to every user of the machine.
// `tandem up` makes a fresh token for its cluster when none is given and hands it to its
// children in their environment. Without a token the router, workers and controller refuse to
// start, unless --insecure-no-cluster-auth says to run the internal plane open (development).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cli/flags.h"

namespace tandem::cli {

inline constexpr char kClusterTokenEnv[] = "TANDEM_CLUSTER_TOKEN";
inline constexpr char kClusterTokenFileEnv[] = "TANDEM_CLUSTER_TOKEN_FILE";

struct ClusterTokenFlags {
  std::string file;
  bool insecure = false;

  // with_insecure: offer --insecure-no-cluster-auth (not in tandem up, which always has a token).
  void Register(FlagSet& flags, bool with_insecure = true);
  // Whether a token was given at all (a file flag, or either environment variable).
  bool Given() const;
  // The token ("" with --insecure-no-cluster-auth). FailedPrecondition when there is none, or
  // it is shorter than 16 characters; NotFound for a file that cannot be read.
  absl::StatusOr<std::string> Resolve() const;
};

}  // namespace tandem::cli
