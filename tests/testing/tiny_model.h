// Tiny random-weight models for tests, written once per test process into a temp directory.
#pragma once

#include <string>

#include "synth/synthetic_model.h"

namespace tandem::testing {

// Path of a GGUF written from `spec` (cached by spec name + seed + types for this process).
std::string TinyModelPath(const synth::SyntheticModelSpec& spec = synth::SyntheticModelSpec());

// A fresh empty directory for this test process.
std::string TestTempDir();

}  // namespace tandem::testing
