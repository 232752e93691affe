// Every environment variable tandem reads, read here and only here (src/cli): the libraries
// below take what they need as options. `tandem --help` lists them.
//
//   TANDEM_MODELS_DIR, XDG_CACHE_HOME, HOME  where model files are kept (ModelStoreOptions)
//   TANDEM_PYTHON                            the python that fetches the bundled model
//   TANDEM_LOG_LEVEL                         trace|debug|info|warn|error|off
//   TANDEM_CPU_ISA                           scalar|avx2|avx512: the default for --isa
//   TANDEM_API_KEY                           the router's API key when --api-key is not given
//   TANDEM_CLUSTER_TOKEN(_FILE)              the internal plane's secret (cli/cluster_token.h;
//                                            tandem up also sets UCX_NET_DEVICES=lo for its workers)
//   OPENAI_API_KEY                           the key `tandem bench serve` sends (as OpenAI's tools do)
//   KUBERNETES_SERVICE_HOST/PORT, TMPDIR     the controller's in-cluster Kubernetes access
//
// Thread-safety: reads the process environment; call from main before starting threads.
#pragma once

#include <string>

#include "modelstore/model_store.h"

namespace tandem::cli {

// The value of `name`, or "" when unset.
std::string Env(const char* name);

// models_dir: $TANDEM_MODELS_DIR, else $XDG_CACHE_HOME/tandem/models (when absolute), else
// $HOME/.cache/tandem/models ("" when none is set); python: $TANDEM_PYTHON, else "python3".
ModelStoreOptions ModelStoreOptionsFromEnvironment();

// Applies $TANDEM_LOG_LEVEL (if set) to every logger. Called first thing in main.
void ApplyLogLevelFromEnvironment();

// Every connection or request in flight holds a file descriptor (the router's clients, the
// load generator's requests): raises the soft limit on open files to the hard one, so a few
// thousand of them do not fail with EMFILE. Called first thing in main.
void RaiseOpenFileLimit();

}  // namespace tandem::cli
